"""Rich deskd errors, decoded from ``grpc-status-details-bin``.

Every error deskd returns carries a ``google.rpc.Status`` in the
``grpc-status-details-bin`` trailer with a ``google.rpc.ErrorInfo`` (domain
``deskd``, an UPPER_SNAKE ``reason``, metadata), a ``google.rpc.RequestInfo``
(the request id that the server log also shows) and, depending on the error,
``BadRequest`` field violations, ``RetryInfo``, ``QuotaFailure``,
``ResourceInfo`` or ``PreconditionFailure`` (see the repository's
``docs/errors.md``). :class:`DeskdError` exposes all of it as attributes.

The clients returned by :func:`deskd_client.connect` and
:func:`deskd_client.aio.connect` raise :class:`DeskdError` themselves. For a
``grpc.RpcError`` obtained another way (a ``.future()`` call, a channel of
your own) use :func:`decode`.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

__all__ = [
    "DeskdError",
    "FieldViolation",
    "QuotaViolation",
    "PreconditionViolation",
    "ResourceInfo",
    "decode",
]

DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class FieldViolation:
    """One invalid field of a request (``google.rpc.BadRequest.FieldViolation``).

    ``field`` is a path into the request such as ``ticket.title`` or
    ``update_mask.paths[0]``; ``reason`` is deskd's UPPER_SNAKE reason such as
    ``REQUIRED`` (empty when the server sent none).
    """

    field: str
    description: str
    reason: str = ""


@dataclass(frozen=True)
class QuotaViolation:
    """One exhausted quota (``google.rpc.QuotaFailure.Violation``), e.g.
    subject ``principal:<user id>``."""

    subject: str
    description: str


@dataclass(frozen=True)
class PreconditionViolation:
    """One failed precondition (``google.rpc.PreconditionFailure.Violation``),
    e.g. type ``ETAG_MISMATCH``."""

    type: str
    subject: str
    description: str


@dataclass(frozen=True)
class ResourceInfo:
    """The resource an error is about (``google.rpc.ResourceInfo``)."""

    resource_type: str
    resource_name: str
    owner: str
    description: str


@dataclass(frozen=True)
class _Decoded:
    status: status_pb2.Status | None = None
    reason: str = ""
    domain: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    field_violations: tuple[FieldViolation, ...] = ()
    retry_delay: datetime.timedelta | None = None
    request_id: str = ""
    quota_violations: tuple[QuotaViolation, ...] = ()
    precondition_violations: tuple[PreconditionViolation, ...] = ()
    resource_info: ResourceInfo | None = None


class DeskdError(grpc.RpcError):
    """A failed deskd RPC with its rich error details.

    It is a ``grpc.RpcError``, so ``except grpc.RpcError`` still catches it, and
    like one it has the methods ``code()``, ``details()`` and
    ``trailing_metadata()``. On top of that:

    Attributes:
        message: The status message (the same as ``details()``, never None).
        reason: ``ErrorInfo.reason``, e.g. ``INVALID_ARGUMENT``, ``NOT_FOUND``,
            ``RATE_LIMITED``, ``PERMISSION_MISSING``; empty when the status
            had no ErrorInfo (transport-level errors).
        domain: ``ErrorInfo.domain``: ``deskd`` for deskd's own errors.
        metadata: ``ErrorInfo.metadata``, e.g. ``{"permission": "tickets:write"}``.
        field_violations: ``BadRequest`` violations, in the server's order.
        retry_delay: ``RetryInfo.retry_delay``: how long to wait before a retry
            (rate limits, overload, unavailability), or None.
        request_id: ``RequestInfo.request_id`` (else the ``x-request-id``
            trailer): quote it when asking about a failure in the server log.
        quota_violations: ``QuotaFailure`` violations.
        precondition_violations: ``PreconditionFailure`` violations.
        resource_info: ``ResourceInfo`` when the error names a resource.
        status: The decoded ``google.rpc.Status``, or None when the trailer
            was missing or did not match the call's status.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        status: status_pb2.Status | None = None,
        trailing_metadata: Iterable[tuple[str, str | bytes]] = (),
    ) -> None:
        self._code = code
        self.message = message
        self._trailing = tuple(trailing_metadata)
        decoded = _decode_status(status, self._trailing)
        self.status = decoded.status
        self.reason = decoded.reason
        self.domain = decoded.domain
        self.metadata: Mapping[str, str] = decoded.metadata
        self.field_violations: tuple[FieldViolation, ...] = decoded.field_violations
        self.retry_delay = decoded.retry_delay
        self.request_id = decoded.request_id
        self.quota_violations: tuple[QuotaViolation, ...] = decoded.quota_violations
        self.precondition_violations: tuple[PreconditionViolation, ...] = (
            decoded.precondition_violations
        )
        self.resource_info = decoded.resource_info
        super().__init__(str(self))

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError | grpc.aio.AioRpcError) -> DeskdError:
        """Decodes a ``grpc.RpcError`` (sync) or ``grpc.aio.AioRpcError``.

        An error that is already a DeskdError is returned as it is.
        """
        if isinstance(error, DeskdError):
            return error
        call = cast(grpc.Call, error)
        code = call.code()
        message = call.details() or ""
        trailing: list[tuple[str, str | bytes]] = [
            (str(k), v) for k, v in (call.trailing_metadata() or ())
        ]
        status: status_pb2.Status | None
        try:
            status = cast("status_pb2.Status | None", rpc_status.from_call(call))
        except ValueError:
            # The details' code or message disagree with the call's: trust
            # the call and ignore the details.
            status = None
        return cls(code, message, status=status, trailing_metadata=trailing)

    def code(self) -> grpc.StatusCode:
        """The gRPC status code, e.g. ``grpc.StatusCode.NOT_FOUND``."""
        return self._code

    def details(self) -> str:
        """The status message (grpc's name for it); see :attr:`message`."""
        return self.message

    # types-grpcio types this as a tuple of key/value objects; at run time grpc
    # returns (key, value) tuples, and so does this.
    def trailing_metadata(self) -> tuple[tuple[str, str | bytes], ...]:  # type: ignore[override]
        """The response's trailing metadata, ``grpc-status-details-bin`` included."""
        return self._trailing

    def violation(self, field_path: str) -> FieldViolation | None:
        """The first field violation whose field is ``field_path``, or None."""
        for v in self.field_violations:
            if v.field == field_path:
                return v
        return None

    def __str__(self) -> str:
        parts = [f"{self._code.name}: {self.message}"]
        extra = []
        if self.reason:
            extra.append(f"reason={self.reason}")
        if self.retry_delay is not None:
            extra.append(f"retry_delay={self.retry_delay.total_seconds():g}s")
        if self.request_id:
            extra.append(f"request_id={self.request_id}")
        if extra:
            parts.append(f"({', '.join(extra)})")
        return " ".join(parts)

    def __repr__(self) -> str:
        return f"DeskdError({self._code.name}, {self.message!r}, reason={self.reason!r})"


def decode(error: grpc.RpcError | grpc.aio.AioRpcError) -> DeskdError:
    """Decodes any gRPC error into a :class:`DeskdError` (see its attributes)."""
    return DeskdError.from_rpc_error(error)


def _decode_status(
    status: status_pb2.Status | None, trailing: tuple[tuple[str, str | bytes], ...]
) -> _Decoded:
    reason = domain = request_id = ""
    metadata: dict[str, str] = {}
    fields: list[FieldViolation] = []
    quotas: list[QuotaViolation] = []
    preconditions: list[PreconditionViolation] = []
    retry_delay: datetime.timedelta | None = None
    resource: ResourceInfo | None = None

    for detail in status.details if status is not None else ():
        if (info := _unpack(detail, error_details_pb2.ErrorInfo)) is not None:
            reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
        elif (bad := _unpack(detail, error_details_pb2.BadRequest)) is not None:
            fields.extend(
                FieldViolation(v.field, v.description, _reason_of(v)) for v in bad.field_violations
            )
        elif (retry := _unpack(detail, error_details_pb2.RetryInfo)) is not None:
            retry_delay = retry.retry_delay.ToTimedelta()
        elif (req := _unpack(detail, error_details_pb2.RequestInfo)) is not None:
            request_id = req.request_id
        elif (quota := _unpack(detail, error_details_pb2.QuotaFailure)) is not None:
            quotas.extend(QuotaViolation(v.subject, v.description) for v in quota.violations)
        elif (pre := _unpack(detail, error_details_pb2.PreconditionFailure)) is not None:
            preconditions.extend(
                PreconditionViolation(v.type, v.subject, v.description) for v in pre.violations
            )
        elif (res := _unpack(detail, error_details_pb2.ResourceInfo)) is not None:
            resource = ResourceInfo(res.resource_type, res.resource_name, res.owner, res.description)

    if not request_id:
        for key, value in trailing:
            if key == "x-request-id" and isinstance(value, str):
                request_id = value
                break

    return _Decoded(
        status=status,
        reason=reason,
        domain=domain,
        metadata=metadata,
        field_violations=tuple(fields),
        retry_delay=retry_delay,
        request_id=request_id,
        quota_violations=tuple(quotas),
        precondition_violations=tuple(preconditions),
        resource_info=resource,
    )


_M = TypeVar("_M", bound=Message)


def _unpack(detail: any_pb2.Any, cls: type[_M]) -> _M | None:
    msg = cls()
    return msg if detail.Unpack(msg) else None


def _reason_of(violation: Any) -> str:
    # `reason` was added to FieldViolation in 2024; older
    # googleapis-common-protos releases lack it.
    return str(getattr(violation, "reason", ""))
