"""The Python face of the client: ``Ductape`` and ``AsyncDuctape``.

Everything here translates: keyword arguments become the documented argument object, the
core (in Rust) checks and runs it, and answers come back as typed objects.
"""

from __future__ import annotations

import enum
import functools
import os
import time
import weakref
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from . import _native
from ._models import (
    AuditPage,
    Change,
    CheckReport,
    Secret,
    SecretMetadata,
    SecretVersion,
    TokenType,
    UsageEntry,
)


def _warn(message: str, *args: object) -> None:
    """A warning on the ``ductape`` logger. ``logging`` is imported only here, when there is
    something to say: importing it took ~3.4 ms, 15% of a cold ``import ductape``."""
    import logging

    logging.getLogger("ductape").warning(message, *args)


def _served(raw: dict[str, Any]) -> dict[str, Any]:
    """A fetch's answer; one served stale from the cache (the server could not answer,
    ``stale_if_error``) is logged as a warning."""
    if raw.pop("stale", False):
        _warn(
            "ductape: the server cannot answer; serving the cached value of %r past its TTL "
            "(stale_if_error)",
            raw.get("key"),
        )
    return raw


# Most Secret objects a client keeps for its cache's fast path.
_MAX_HITS = 10_000
# A cell not asked for yet (or asked again in a forked child).
_ASK = object()


class _Hits:
    """The cache's fast path: a fresh hit without a request. The cache itself (freshness,
    invalidation) is the core's; this keeps the object built for a hit, with the cache's
    generation then and when the hit stops being fresh, and answers with it while the
    generation has not moved (nothing came in or went out) and the time has not come."""

    __slots__ = ("__weakref__", "_cell", "_kept", "_native")

    def __init__(self, native: _native.NativeClient) -> None:
        self._native = native
        self._cell: Any = _ASK
        self._kept: dict[str, tuple[int, float, Secret]] = {}
        _LIVE.add(self)

    def get(self, key: str) -> Secret | None:
        cell = self._cell
        if cell is _ASK:
            cell = self._cell = self._native.cache_generation_cell()
        if cell is None:
            return None
        kept = self._kept.get(key)
        if kept is not None and kept[0] == cell.get() and time.monotonic() < kept[1]:
            return kept[2]
        # Taken before the core measures the freshness left, so the deadline is never late.
        now = time.monotonic()
        got = self._native.cache_hit(key)
        if got is None:
            self._kept.pop(key, None)
            return None
        generation, fresh_for, wire = got
        secret = Secret._from_wire(wire)
        if len(self._kept) >= _MAX_HITS:
            self._kept.clear()
        self._kept[key] = (generation, now + fresh_for, secret)
        return secret

    def _forked(self) -> None:
        # The child's client is a new one, with a new cache: nothing kept holds there.
        self._kept.clear()
        self._cell = _ASK


_LIVE: weakref.WeakSet[_Hits] = weakref.WeakSet()


def _forked() -> None:
    for hits in list(_LIVE):
        hits._forked()


os.register_at_fork(after_in_child=_forked)


class _Unset(enum.Enum):
    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


UNSET = _Unset.UNSET
"""Marks an ``update`` argument as not given (``None`` clears the field instead)."""


def _create_args(
    key: str,
    value: str,
    description: str | None,
    token_type: TokenType | None,
    scope: Sequence[str] | None,
    envs: Sequence[str] | None,
    expires_at: int | None,
) -> dict[str, Any]:
    args: dict[str, Any] = {"key": key, "value": value}
    for name, v in (
        ("description", description),
        ("token_type", token_type),
        ("scope", scope),
        ("envs", envs),
        ("expires_at", expires_at),
    ):
        if v is not None:
            args[name] = _listify(v) if name in ("scope", "envs") else v
    return args


def _update_args(**given: Any) -> dict[str, Any]:
    args: dict[str, Any] = {}
    for name, v in given.items():
        if v is UNSET:
            continue
        args[name] = _listify(v) if name in ("scope", "envs") and v is not None else v
    return args


def _listify(v: Any) -> Any:
    # Tuples and other sequences become lists; a str stays a str so the core can name the
    # mistake ("field 'scope' must be an array of strings").
    if isinstance(v, (list, str, bytes)) or not isinstance(v, Sequence):
        return v
    return list(v)


class Secrets:
    """Secret operations: ``create``, ``fetch_all``, ``fetch``, ``update``, ``delete``,
    ``revoke``, ``restore``."""

    def __init__(self, native: _native.NativeClient) -> None:
        self._native = native
        self._hits = _Hits(native)

    def create(
        self,
        key: str,
        value: str,
        *,
        description: str | None = None,
        token_type: TokenType | None = None,
        scope: Sequence[str] | None = None,
        envs: Sequence[str] | None = None,
        expires_at: int | None = None,
    ) -> SecretMetadata:
        """Encrypts ``value`` locally and creates the secret. ``ConflictError`` if it exists."""
        args = _create_args(key, value, description, token_type, scope, envs, expires_at)
        return SecretMetadata._from_wire(self._native.create(args))

    def fetch_all(self) -> list[SecretMetadata]:
        """Every secret's metadata (never values)."""
        return [SecretMetadata._from_wire(d) for d in self._native.fetch_all()]

    def iterate(self, *, page_size: int = 1000) -> Iterator[SecretMetadata]:
        """Every secret's metadata, fetched a page at a time as the loop goes (for
        workspaces too big to hold at once). ``page_size``: 1 to 1000."""
        cursor: str | None = None
        while True:
            page = self._native.page(page_size, cursor)
            for d in page["secrets"]:
                yield SecretMetadata._from_wire(d)
            cursor = page["next_cursor"]
            if cursor is None:
                return

    def fetch(self, key: str, version: int | None = None, *, fresh: bool = False) -> Secret:
        """One secret with its value, decrypted locally; ``version``: an earlier version.
        With the cache on (``cache_ttl``), ``fresh=True`` asks the server whatever it holds."""
        if version is None and not fresh:
            hit = self._hits.get(key)
            if hit is not None:
                return hit
        return Secret._from_wire(_served(self._native.fetch(key, version, fresh)))

    def versions(self, key: str) -> list[SecretVersion]:
        """Every kept version of the secret, newest first (what changed, never values)."""
        return [SecretVersion._from_wire(v) for v in self._native.versions(key)]

    def rollback(
        self, key: str, version: int, *, if_version: int | None = None
    ) -> SecretMetadata:
        """A new current version with ``version``'s value; history is kept."""
        return SecretMetadata._from_wire(self._native.rollback(key, version, if_version))

    def undelete(self, key: str) -> SecretMetadata:
        """Brings the secret most recently deleted under ``key`` back from the trash."""
        return SecretMetadata._from_wire(self._native.undelete(key))

    def update(
        self,
        key: str,
        *,
        value: str | _Unset = UNSET,
        description: str | None | _Unset = UNSET,
        token_type: TokenType | None | _Unset = UNSET,
        scope: Sequence[str] | None | _Unset = UNSET,
        envs: Sequence[str] | None | _Unset = UNSET,
        expires_at: int | None | _Unset = UNSET,
        expected_version: int | None = None,
        if_version: int | None = None,
    ) -> SecretMetadata:
        """Changes the value (re-encrypted locally) and/or metadata. Arguments left out are
        kept; ``None`` clears a metadata field."""
        args = _update_args(
            value=value,
            description=description,
            token_type=token_type,
            scope=scope,
            envs=envs,
            expires_at=expires_at,
            expected_version=expected_version if expected_version is not None else UNSET,
            if_version=if_version if if_version is not None else UNSET,
        )
        return SecretMetadata._from_wire(self._native.update(key, args))

    def delete(
        self, key: str, *, if_version: int | None = None, permanent: bool = False
    ) -> bool:
        """Deletes the secret for good. Returns ``True``. With ``if_version``, only if the
        secret is still at that version (else :class:`ConflictError`)."""
        return bool(self._native.delete(key, if_version, permanent))

    def revoke(self, key: str, *, if_version: int | None = None) -> bool:
        """Revokes the secret (kept, but its value can no longer be read). Returns ``True``."""
        return bool(self._native.revoke(key, if_version))

    def restore(self, key: str, *, if_version: int | None = None) -> SecretMetadata:
        """Undoes a revoke."""
        return SecretMetadata._from_wire(self._native.restore(key, if_version))

    def resolve(self, config: Any, *, app: str | None = None, env: str | None = None) -> Any:
        """A copy of ``config`` (any JSON-like value) with every ``$Token{KEY}`` replaced by
        the secret's value, all fetched in one request. Raises the reason of each reference
        that cannot be resolved (``.failures`` lists them when there are several).
        ``$$Token{`` stands for a literal ``$Token{``."""
        return self._native.resolve(config, app, env)

    def check(
        self,
        config: Any,
        *,
        app: str | None = None,
        env: str | None = None,
        expiring_within: float | None = None,
    ) -> CheckReport:
        """Reports every reference and whether it would resolve, without reading values.
        Secrets expiring within ``expiring_within`` seconds (default 7 days) get a warning."""
        return CheckReport._from_wire(self._native.check(config, app, env, expiring_within))

    def usage(self, key: str) -> list[UsageEntry]:
        """Which apps and environments read the secret, and when last."""
        return [UsageEntry(**u) for u in self._native.usage(key)]


class AsyncSecrets:
    """The operations of :class:`Secrets` as coroutines."""

    def __init__(self, native: _native.NativeClient) -> None:
        self._native = native
        self._hits = _Hits(native)

    async def create(
        self,
        key: str,
        value: str,
        *,
        description: str | None = None,
        token_type: TokenType | None = None,
        scope: Sequence[str] | None = None,
        envs: Sequence[str] | None = None,
        expires_at: int | None = None,
    ) -> SecretMetadata:
        args = _create_args(key, value, description, token_type, scope, envs, expires_at)
        return SecretMetadata._from_wire(await self._native.create_async(args))

    async def fetch_all(self) -> list[SecretMetadata]:
        return [SecretMetadata._from_wire(d) for d in await self._native.fetch_all_async()]

    async def iterate(self, *, page_size: int = 1000) -> AsyncIterator[SecretMetadata]:
        cursor: str | None = None
        while True:
            page = await self._native.page_async(page_size, cursor)
            for d in page["secrets"]:
                yield SecretMetadata._from_wire(d)
            cursor = page["next_cursor"]
            if cursor is None:
                return

    async def fetch(self, key: str, version: int | None = None, *, fresh: bool = False) -> Secret:
        if version is None and not fresh:
            hit = self._hits.get(key)
            if hit is not None:
                return hit
        return Secret._from_wire(_served(await self._native.fetch_async(key, version, fresh)))

    async def versions(self, key: str) -> list[SecretVersion]:
        return [SecretVersion._from_wire(v) for v in await self._native.versions_async(key)]

    async def rollback(
        self, key: str, version: int, *, if_version: int | None = None
    ) -> SecretMetadata:
        return SecretMetadata._from_wire(
            await self._native.rollback_async(key, version, if_version)
        )

    async def undelete(self, key: str) -> SecretMetadata:
        return SecretMetadata._from_wire(await self._native.undelete_async(key))

    async def update(
        self,
        key: str,
        *,
        value: str | _Unset = UNSET,
        description: str | None | _Unset = UNSET,
        token_type: TokenType | None | _Unset = UNSET,
        scope: Sequence[str] | None | _Unset = UNSET,
        envs: Sequence[str] | None | _Unset = UNSET,
        expires_at: int | None | _Unset = UNSET,
        expected_version: int | None = None,
        if_version: int | None = None,
    ) -> SecretMetadata:
        args = _update_args(
            value=value,
            description=description,
            token_type=token_type,
            scope=scope,
            envs=envs,
            expires_at=expires_at,
            expected_version=expected_version if expected_version is not None else UNSET,
            if_version=if_version if if_version is not None else UNSET,
        )
        return SecretMetadata._from_wire(await self._native.update_async(key, args))

    async def delete(
        self, key: str, *, if_version: int | None = None, permanent: bool = False
    ) -> bool:
        return bool(await self._native.delete_async(key, if_version, permanent))

    async def revoke(self, key: str, *, if_version: int | None = None) -> bool:
        return bool(await self._native.revoke_async(key, if_version))

    async def restore(self, key: str, *, if_version: int | None = None) -> SecretMetadata:
        return SecretMetadata._from_wire(await self._native.restore_async(key, if_version))

    async def resolve(self, config: Any, *, app: str | None = None, env: str | None = None) -> Any:
        return await self._native.resolve_async(config, app, env)

    async def check(
        self,
        config: Any,
        *,
        app: str | None = None,
        env: str | None = None,
        expiring_within: float | None = None,
    ) -> CheckReport:
        return CheckReport._from_wire(await self._native.check_async(config, app, env, expiring_within))

    async def usage(self, key: str) -> list[UsageEntry]:
        return [UsageEntry(**u) for u in await self._native.usage_async(key)]


class _Base:
    def __init__(
        self,
        access_key: str | None = None,
        *,
        url: str | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        cache_ttl: float | None = None,
        stale_if_error: float | None = None,
        cache_watch: bool = False,
        cache_snapshot: str | None = None,
    ) -> None:
        # The key goes straight to the core; no Python attribute keeps it.
        self._native = _native.NativeClient(
            access_key,
            url,
            timeout,
            max_retries,
            cache_ttl,
            stale_if_error,
            cache_watch,
            cache_snapshot,
        )

    def _say_if_offline(self) -> None:
        if self._native.describe()["offline"]:
            _warn(
                "ductape: the server is unreachable; started from the cache snapshot "
                "(values are served within stale_if_error)"
            )

    @property
    def url(self) -> str:
        return str(self._native.describe()["url"])

    @property
    def access_key_id(self) -> str:
        """The access key's public id (never the key)."""
        return str(self._native.describe()["access_key_id"])

    def __repr__(self) -> str:
        d = self._native.describe()
        return f"{type(self).__name__}(url={d['url']!r}, access_key_id={d['access_key_id']!r})"

    def __getstate__(self) -> Any:
        raise TypeError(f"{type(self).__name__} cannot be pickled (it holds an access key)")


class Ductape(_Base):
    """The Ductape Secrets client.

    ``access_key`` and ``url`` default to ``DUCTAPE_ACCESS_KEY`` and ``DUCTAPE_URL``.
    ``cache_ttl`` (seconds) turns on the value cache: values are served from memory for
    that long, then revalidated (a 304 keeps them); ``stale_if_error`` (seconds, off by
    default) serves the last good value that much longer when the server cannot answer;
    ``cache_watch=True`` follows the server's change feed so that a value anyone changes is
    dropped from the cache within about a second; ``cache_snapshot`` (a file path) keeps
    the cache's answers as ciphertext so that ``init()`` and reads work, within
    ``stale_if_error``, when the server is unreachable at start.

        ductape = Ductape(access_key="dtpk_...")
        ductape.init()
        ductape.secrets.create(key="STRIPE_API_KEY", value="sk_live_...")
    """

    @functools.cached_property
    def secrets(self) -> Secrets:
        """Secret operations (after ``init()``)."""
        return Secrets(self._native)

    def watch(self) -> Iterator[Change]:
        """Every change to a secret this key may see, from now on, as it happens (blocks
        between changes; metadata only): ``for change in ductape.watch(): ...``."""
        w = self._native.watch()
        while (e := w.next()) is not None:
            yield Change(**e)

    def init(self) -> None:
        """Authenticates and unwraps the workspace key locally. Call once before use."""
        self._native.init()
        self._say_if_offline()

    def audit(
        self,
        *,
        secret_key: str | None = None,
        access_key_id: str | None = None,
        app: str | None = None,
        env: str | None = None,
        before: int | None = None,
        limit: int | None = None,
    ) -> AuditPage:
        """The audit trail (admin permission), newest first, filtered and paged."""
        q = {"secret_key": secret_key, "access_key_id": access_key_id, "app": app, "env": env,
             "before": before, "limit": limit}
        return AuditPage._from_wire(self._native.audit(q))

    def rotate_key(self) -> dict[str, Any]:
        """Rotates the workspace keys (unbound admin key): a new key generation, every
        value re-encrypted under it, every remaining access key granted it, the old one
        retired. Run it after deleting a leaked key. Resumable: call it again after an
        interruption. Returns ``{"generation", "resealed", "started"}``."""
        return self._native.rotate_key()


class AsyncDuctape(_Base):
    """The asyncio client: the same methods as :class:`Ductape`, as coroutines.

        ductape = AsyncDuctape()
        await ductape.init()
        secret = await ductape.secrets.fetch("STRIPE_API_KEY")
    """

    @functools.cached_property
    def secrets(self) -> AsyncSecrets:
        """Secret operations (after ``init()``)."""
        return AsyncSecrets(self._native)

    async def watch(self) -> AsyncIterator[Change]:
        """Every change to a secret this key may see, from now on, as it happens:
        ``async for change in ductape.watch(): ...``."""
        w = self._native.watch()
        while (e := await w.next_async()) is not None:
            yield Change(**e)

    async def init(self) -> None:
        await self._native.init_async()
        self._say_if_offline()

    async def audit(
        self,
        *,
        secret_key: str | None = None,
        access_key_id: str | None = None,
        app: str | None = None,
        env: str | None = None,
        before: int | None = None,
        limit: int | None = None,
    ) -> AuditPage:
        q = {"secret_key": secret_key, "access_key_id": access_key_id, "app": app, "env": env,
             "before": before, "limit": limit}
        return AuditPage._from_wire(await self._native.audit_async(q))

    async def rotate_key(self) -> dict[str, Any]:
        return await self._native.rotate_key_async()
