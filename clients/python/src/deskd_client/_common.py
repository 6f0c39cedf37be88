"""What the sync and asyncio clients share: credentials metadata and defaults."""

from __future__ import annotations

from collections.abc import Iterable

DEFAULT_TIMEOUT = 30.0
"""The deadline, in seconds, that calls get when they name none."""

TENANT_HEADER = "x-tenant-id"
API_KEY_HEADER = "x-api-key"
AUTHORIZATION_HEADER = "authorization"


def credential_metadata(
    *, token: str | None, api_key: str | None, tenant: str | None
) -> tuple[tuple[str, str], ...]:
    """The metadata every call carries.

    deskd refuses a request that carries both a JWT and an API key
    (``CREDENTIAL_AMBIGUOUS``), so at most one of ``token`` and ``api_key``
    may be given. ``tenant`` (sent as ``x-tenant-id``) only confirms the
    credential's tenant: a different one is refused with ``TENANT_MISMATCH``.
    """
    if token and api_key:
        raise ValueError("give token or api_key, not both: deskd refuses both at once")
    md: list[tuple[str, str]] = []
    if token:
        md.append((AUTHORIZATION_HEADER, f"Bearer {token}"))
    if api_key:
        md.append((API_KEY_HEADER, api_key))
    if tenant:
        md.append((TENANT_HEADER, tenant))
    return tuple(md)


def merge_metadata(
    call_metadata: Iterable[tuple[str, str | bytes]] | None,
    defaults: tuple[tuple[str, str], ...],
) -> list[tuple[str, str | bytes]]:
    """The call's own metadata plus the defaults whose keys it does not set."""
    merged: list[tuple[str, str | bytes]] = list(call_metadata or ())
    present = {key for key, _ in merged}
    # A call that brings its own credential replaces both kinds of default.
    if present & {AUTHORIZATION_HEADER, API_KEY_HEADER}:
        present |= {AUTHORIZATION_HEADER, API_KEY_HEADER}
    merged.extend((k, v) for k, v in defaults if k not in present)
    return merged
