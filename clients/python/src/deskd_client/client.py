"""The synchronous deskd client: :func:`connect` and :class:`Client`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import grpc

from deskd_client._common import DEFAULT_TIMEOUT, credential_metadata, merge_metadata
from deskd_client._gen.deskd.operations.v1 import operations_pb2_grpc
from deskd_client._gen.deskd.stats.v1 import stats_pb2_grpc
from deskd_client._gen.deskd.tickets.v1 import tickets_pb2_grpc
from deskd_client._gen.deskd.users.v1 import users_pb2_grpc
from deskd_client.errors import DeskdError

__all__ = ["Client", "connect"]


class _CallDetails(
    NamedTuple(
        "_CallDetails",
        [
            ("method", str),
            ("timeout", float | None),
            ("metadata", Any),
            ("credentials", grpc.CallCredentials | None),
            ("wait_for_ready", bool | None),
            ("compression", grpc.Compression | None),
        ],
    ),
    grpc.ClientCallDetails,
):
    pass


class _Interceptor(grpc.UnaryUnaryClientInterceptor):
    """Adds the credential metadata and the default deadline to every call,
    and turns a failed blocking call's ``grpc.RpcError`` into a DeskdError."""

    def __init__(self, metadata: tuple[tuple[str, str], ...], timeout: float | None) -> None:
        self._metadata = metadata
        self._timeout = timeout

    def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Any], Any],
        client_call_details: grpc.ClientCallDetails,
        request: Any,
    ) -> Any:
        details = _CallDetails(
            client_call_details.method,
            self._timeout if client_call_details.timeout is None else client_call_details.timeout,
            merge_metadata(client_call_details.metadata, self._metadata),
            client_call_details.credentials,
            client_call_details.wait_for_ready,
            client_call_details.compression,
        )
        call = continuation(details, request)
        # A blocking call has finished here; a `.future()` call may still be
        # running, and its errors stay plain grpc.RpcError (use errors.decode).
        if call.done():
            error = call.exception()
            if isinstance(error, grpc.RpcError):
                raise DeskdError.from_rpc_error(error) from None
        return call


class Client:
    """A connection to deskd with one stub per service.

    Every call carries the credential and tenant given to :func:`connect` and,
    unless it passes its own ``timeout=``, the default deadline. A failed call
    raises :class:`deskd_client.DeskdError`.

    Attributes:
        tickets: ``deskd.tickets.v1.TicketsService``.
        users: ``deskd.users.v1.UsersService``.
        stats: ``deskd.stats.v1.StatsService``.
        operations: ``deskd.operations.v1.OperationsService``.
        channel: The intercepted channel, for stubs of your own.
    """

    def __init__(self, channel: grpc.Channel, *, raw_channel: grpc.Channel | None = None) -> None:
        self.channel = channel
        self._raw_channel = raw_channel or channel
        self.tickets = tickets_pb2_grpc.TicketsServiceStub(channel)
        self.users = users_pb2_grpc.UsersServiceStub(channel)
        self.stats = stats_pb2_grpc.StatsServiceStub(channel)
        self.operations = operations_pb2_grpc.OperationsServiceStub(channel)

    def close(self) -> None:
        """Closes the channel; calls in flight are cancelled."""
        self._raw_channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(
    target: str,
    *,
    token: str | None = None,
    api_key: str | None = None,
    tenant: str | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    credentials: grpc.ChannelCredentials | None = None,
    options: Sequence[tuple[str, Any]] = (),
) -> Client:
    """Opens a synchronous client for the deskd server at ``target``.

    Args:
        target: ``host:port`` of deskd's gRPC listener, e.g. ``127.0.0.1:50051``.
        token: A JWT, sent as ``authorization: Bearer <token>`` (people).
        api_key: An API key, sent as ``x-api-key`` (service accounts). At most
            one of ``token`` and ``api_key``.
        tenant: A tenant id, sent as ``x-tenant-id``; it must be the
            credential's tenant (the header confirms it, it cannot choose it).
        timeout: The deadline in seconds of calls that name none; None for
            no deadline (deskd still caps requests with
            ``server.max_request_duration``).
        credentials: TLS channel credentials
            (``grpc.ssl_channel_credentials()``); None for plaintext.
        options: gRPC channel options.

    Returns:
        A :class:`Client`; use it as a context manager or call ``close()``.
    """
    md = credential_metadata(token=token, api_key=api_key, tenant=tenant)
    raw = (
        grpc.secure_channel(target, credentials, options=options)
        if credentials is not None
        else grpc.insecure_channel(target, options=options)
    )
    channel = grpc.intercept_channel(raw, _Interceptor(md, timeout))
    return Client(channel, raw_channel=raw)
