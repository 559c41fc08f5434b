"""Typed results: the documented response fields, in snake_case attributes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

TokenType = Literal["api", "access"]
Status = Literal["active", "revoked", "expired"]


@dataclass(frozen=True)
class SecretMetadata:
    """A secret's metadata (``fetch_all``, ``create``, ``update``). Never holds a value."""

    id: str
    workspace_id: str
    key: str
    description: str | None
    token_type: TokenType | None
    scope: list[str]
    envs: list[str]
    expires_at: int | None
    created_at: str
    updated_at: str
    version: int
    status: Status

    @classmethod
    def _from_wire(cls, d: dict[str, Any]) -> SecretMetadata:
        return cls(**_fields(d))

    def to_dict(self) -> dict[str, Any]:
        """The documented JSON shape (``_id``, ``createdAt``, ``updatedAt``, ...)."""
        return {
            "_id": self.id,
            "workspace_id": self.workspace_id,
            "key": self.key,
            "description": self.description,
            "token_type": self.token_type,
            "scope": list(self.scope),
            "envs": list(self.envs),
            "expires_at": self.expires_at,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "version": self.version,
            "status": self.status,
        }


@dataclass(frozen=True)
class Secret(SecretMetadata):
    """A secret with its decrypted value (``fetch``). ``repr`` never shows the value."""

    value: str = field(default="", repr=False)

    @classmethod
    def _from_wire(cls, d: dict[str, Any]) -> Secret:
        return cls(**_fields(d), value=d["value"])

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["value"] = self.value
        return d


def _fields(d: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": d["_id"],
        "workspace_id": d["workspace_id"],
        "key": d["key"],
        "description": d.get("description"),
        "token_type": d.get("token_type"),
        "scope": list(d.get("scope") or []),
        "envs": list(d.get("envs") or []),
        "expires_at": d.get("expires_at"),
        "created_at": d["createdAt"],
        "updated_at": d["updatedAt"],
        "version": d["version"],
        "status": d["status"],
    }


@dataclass(frozen=True)
class CheckItem:
    """One reference of a :class:`CheckReport`. Never holds a value."""

    key: str
    ok: bool
    code: str | None
    status: int | None
    message: str | None
    expires_at: int | None
    warning: str | None


@dataclass(frozen=True)
class CheckReport:
    """Every ``$Token{KEY}`` of a configuration and whether it would resolve."""

    ok: bool
    references: list[CheckItem]

    @classmethod
    def _from_wire(cls, d: dict[str, Any]) -> CheckReport:
        return cls(ok=d["ok"], references=[CheckItem(**i) for i in d["references"]])


@dataclass(frozen=True)
class UsageEntry:
    """Where a secret was read: one app and environment, with counts and the last access."""

    app: str | None
    env: str | None
    last_access: str
    reads: int
    denied: int


@dataclass(frozen=True)
class SecretVersion:
    """One version of a secret: when it was made, by which access key, what it changed
    (``fields`` names them, ``"value"`` for the value; never values themselves)."""

    version: int
    created_at: str
    access_key_id: str | None
    access_key_name: str | None
    action: str | None
    fields: list[str]
    status: Status
    current: bool
    rollback_of: int | None = None

    @classmethod
    def _from_wire(cls, d: dict[str, Any]) -> SecretVersion:
        rest = {k: v for k, v in d.items() if k != "createdAt"}
        return cls(**rest, created_at=d["createdAt"])


@dataclass(frozen=True)
class Change:
    """A change heard on the change feed (``watch()``): ``kind`` is ``create``, ``update``,
    ``revoke``, ``restore``, ``rollback``, ``undelete``, ``delete``, or ``reset`` (changes
    may have been missed: treat everything as changed; ``key`` and ``version`` are then
    ``None``). Never a value."""

    kind: str
    key: str | None = None
    version: int | None = None


@dataclass(frozen=True)
class AuditEntry:
    """One read or change (allowed or refused). Never holds a value.

    ``app``/``env`` are the access key's binding (else what the caller named);
    ``claimed_app``/``claimed_env`` what the caller claimed when it differs. ``detail`` names
    the fields a change touched. A batch read (``resolve``, ``check``) is one event listing
    the secrets it was allowed to read in ``keys`` (``secret_key`` is then empty); its
    refusals are events of their own. ``prev_hash``/``hash`` chain the events of a workspace.
    """

    id: int
    at: str
    access_key_id: str
    secret_key: str
    action: str
    app: str | None
    env: str | None
    allowed: bool
    reason: str | None
    claimed_app: str | None = None
    claimed_env: str | None = None
    detail: str | None = None
    prev_hash: str = ""
    hash: str = ""
    keys: tuple[str, ...] = ()

    @classmethod
    def _from_wire(cls, d: dict[str, Any]) -> AuditEntry:
        # Fields a newer server adds are ignored, as the wire contract says.
        known = {f for f in cls.__dataclass_fields__}
        fields = {k: v for k, v in d.items() if k in known}
        fields["keys"] = tuple(fields.get("keys", ()))
        return cls(**fields)


@dataclass(frozen=True)
class AuditPage:
    """A page of the audit trail, newest first; pass ``next_before`` as ``before`` for more."""

    events: list[AuditEntry]
    next_before: int | None

    @classmethod
    def _from_wire(cls, d: dict[str, Any]) -> AuditPage:
        return cls(
            events=[AuditEntry._from_wire(e) for e in d["events"]],
            next_before=d.get("next_before"),
        )
