"""Type stubs of the native module (Rust, pyo3)."""

from typing import Any, Awaitable, Dict, Optional

__version__: str

class NativeClient:
    def __init__(
        self,
        access_key: Optional[str] = None,
        url: Optional[str] = None,
        timeout: Optional[float] = None,
        max_retries: Optional[int] = None,
    ) -> None: ...
    def call(self, name: str, args: Optional[Dict[str, Any]] = None, key: Optional[str] = None) -> Any: ...
    def call_async(
        self, name: str, args: Optional[Dict[str, Any]] = None, key: Optional[str] = None
    ) -> Awaitable[Any]: ...
    def describe(self) -> Dict[str, Any]: ...
