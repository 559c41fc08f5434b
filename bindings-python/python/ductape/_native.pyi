"""Type stubs of the native module (Rust, pyo3)."""

from collections.abc import Awaitable
from typing import Any

__version__: str

class NativeClient:
    def __init__(
        self,
        access_key: str | None = None,
        url: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
    ) -> None: ...
    def call(self, name: str, args: dict[str, Any] | None = None, key: str | None = None) -> Any: ...
    def call_async(
        self, name: str, args: dict[str, Any] | None = None, key: str | None = None
    ) -> Awaitable[Any]: ...
    def describe(self) -> dict[str, Any]: ...
