"""The exceptions of the Ductape SDK.

Every error is a :class:`DuctapeError` with ``.status`` (the HTTP status, or ``None`` for
errors that never reached a server), ``.code`` (a stable machine code such as
``"secret_exists"``) and ``.message``. Messages never contain a secret value or an access key.

    try:
        ductape.secrets.create(key="MY_SECRET", value="...")
    except ConflictError:
        print("Secret with this key already exists")
"""

from __future__ import annotations


class DuctapeError(Exception):
    """Base class of every Ductape error."""

    status: int | None
    code: str
    message: str
    retry_after: float | None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str = "error",
        retry_after: float | None = None,
        failures: list[DuctapeError] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.retry_after = retry_after
        # For a resolution where several references failed: each failure (the error itself
        # has the first one's class and every message).
        self.failures: list[DuctapeError] = list(failures or [])

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status={self.status!r}, code={self.code!r})"


class AuthenticationError(DuctapeError):
    """401: no access key, or a wrong one."""


class PermissionDeniedError(DuctapeError):
    """403: the access key lacks a permission, or the secret is outside its app/environment."""


class NotFoundError(DuctapeError):
    """404: no secret with that key."""


class ConflictError(DuctapeError):
    """409: a secret with that key exists, or the secret changed since the expected version."""


class GoneError(DuctapeError):
    """410: the secret's value can no longer be read."""


class SecretRevokedError(GoneError):
    """410: the secret has been revoked."""


class SecretExpiredError(GoneError):
    """410: the secret has expired."""


class BadRequestError(DuctapeError, ValueError):
    """400/405/415: a malformed request."""


class ValidationError(DuctapeError, TypeError, ValueError):
    """422: an argument is invalid; raised before any request when the client can tell.

    It is both a ``TypeError`` and a ``ValueError`` so that either idiom catches it.
    """


class PayloadTooLargeError(ValidationError):
    """413: the value (or the request) is over the size limit (values: 64 KiB)."""


class RateLimitError(DuctapeError):
    """429: rate limited; ``retry_after`` says how long the server asked to wait (seconds)."""


class ServerError(DuctapeError):
    """5xx: a server fault (retried automatically before this is raised)."""


class DuctapeConnectionError(DuctapeError, ConnectionError):
    """The server could not be reached (retried automatically before this is raised)."""


class DuctapeTimeoutError(DuctapeConnectionError, TimeoutError):
    """The request timed out."""


class IntegrityError(DuctapeError):
    """A ciphertext failed authentication: altered, moved from another secret, or not
    encrypted with this workspace's key. The value is never returned."""


class NotInitializedError(DuctapeError, RuntimeError):
    """``init()`` has not been called (or failed)."""


class ConfigurationError(DuctapeError, ValueError):
    """Missing or malformed configuration (access key, URL, timeout)."""


class ProtocolError(DuctapeError):
    """The server answered something this client does not understand."""


__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "ConflictError",
    "DuctapeConnectionError",
    "DuctapeError",
    "DuctapeTimeoutError",
    "GoneError",
    "IntegrityError",
    "NotFoundError",
    "NotInitializedError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "ProtocolError",
    "RateLimitError",
    "SecretExpiredError",
    "SecretRevokedError",
    "ServerError",
    "ValidationError",
]
