"""Ductape Secrets for Python: values are encrypted and decrypted in this process; the
server only ever sees ciphertext.

    from ductape import Ductape, ConflictError

    ductape = Ductape(access_key="dtpk_...")   # or DUCTAPE_ACCESS_KEY / DUCTAPE_URL
    ductape.init()
    ductape.secrets.create(key="STRIPE_API_KEY", value="sk_live_...", envs=["prd"])
    print(ductape.secrets.fetch("STRIPE_API_KEY").value)
"""

from ._client import UNSET, AsyncDuctape, AsyncSecrets, Ductape, Secrets
from ._models import (
    AuditEntry,
    AuditPage,
    Change,
    CheckItem,
    CheckReport,
    Secret,
    SecretMetadata,
    SecretVersion,
    Status,
    TokenType,
    UsageEntry,
)
from ._native import __version__
from .errors import (
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConflictError,
    DuctapeConnectionError,
    DuctapeError,
    DuctapeTimeoutError,
    GoneError,
    IntegrityError,
    NotFoundError,
    NotInitializedError,
    PayloadTooLargeError,
    PermissionDeniedError,
    ProtocolError,
    RateLimitError,
    SecretExpiredError,
    SecretRevokedError,
    ServerError,
    ValidationError,
)

__all__ = [
    "UNSET",
    "AsyncDuctape",
    "AsyncSecrets",
    "AuditEntry",
    "AuditPage",
    "AuthenticationError",
    "BadRequestError",
    "Change",
    "CheckItem",
    "CheckReport",
    "ConfigurationError",
    "ConflictError",
    "Ductape",
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
    "Secret",
    "SecretExpiredError",
    "SecretMetadata",
    "SecretRevokedError",
    "SecretVersion",
    "Secrets",
    "ServerError",
    "Status",
    "TokenType",
    "UsageEntry",
    "ValidationError",
    "__version__",
]
