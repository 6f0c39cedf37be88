"""The asyncio deskd client: :func:`connect` and :class:`AsyncClient`.

Example::

    from deskd_client import aio, tickets_pb2

    async with aio.connect("127.0.0.1:50051", token=jwt) as client:
        resp = await client.tickets.ListTickets(tickets_pb2.ListTicketsRequest())
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from deskd_client._common import DEFAULT_TIMEOUT, credential_metadata, merge_metadata
from deskd_client._gen.deskd.operations.v1 import operations_pb2_grpc
from deskd_client._gen.deskd.stats.v1 import stats_pb2_grpc
from deskd_client._gen.deskd.tickets.v1 import tickets_pb2_grpc
from deskd_client._gen.deskd.users.v1 import users_pb2_grpc
from deskd_client.errors import DeskdError

if TYPE_CHECKING:
    from deskd_client._gen.deskd.operations.v1.operations_pb2_grpc import (
        OperationsServiceAsyncStub,
    )
    from deskd_client._gen.deskd.stats.v1.stats_pb2_grpc import StatsServiceAsyncStub
    from deskd_client._gen.deskd.tickets.v1.tickets_pb2_grpc import TicketsServiceAsyncStub
    from deskd_client._gen.deskd.users.v1.users_pb2_grpc import UsersServiceAsyncStub

__all__ = ["AsyncClient", "connect"]


class _Interceptor(grpc.aio.UnaryUnaryClientInterceptor):
    """Adds the credential metadata and the default deadline to every call,
    and raises DeskdError for a failed one."""

    def __init__(self, metadata: tuple[tuple[str, str], ...], timeout: float | None) -> None:
        self._metadata = metadata
        self._timeout = timeout

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Any],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        md = grpc.aio.Metadata(
            *merge_metadata(
                list(client_call_details.metadata or ()), self._metadata
            )
        )
        details = grpc.aio.ClientCallDetails(
            client_call_details.method,
            self._timeout if client_call_details.timeout is None else client_call_details.timeout,
            md,
            client_call_details.credentials,
            client_call_details.wait_for_ready,
        )
        call = await continuation(details, request)
        try:
            await call
        except grpc.aio.AioRpcError as error:
            raise DeskdError.from_rpc_error(error) from None
        return call


class AsyncClient:
    """An asyncio connection to deskd with one stub per service; see
    :class:`deskd_client.Client`. Await the stubs' calls; a failed call raises
    :class:`deskd_client.DeskdError`."""

    tickets: TicketsServiceAsyncStub
    users: UsersServiceAsyncStub
    stats: StatsServiceAsyncStub
    operations: OperationsServiceAsyncStub

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel
        self.tickets = tickets_pb2_grpc.TicketsServiceStub(channel)
        self.users = users_pb2_grpc.UsersServiceStub(channel)
        self.stats = stats_pb2_grpc.StatsServiceStub(channel)
        self.operations = operations_pb2_grpc.OperationsServiceStub(channel)

    async def close(self) -> None:
        """Closes the channel; calls in flight are cancelled."""
        await self.channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def connect(
    target: str,
    *,
    token: str | None = None,
    api_key: str | None = None,
    tenant: str | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    credentials: grpc.ChannelCredentials | None = None,
    options: Sequence[tuple[str, Any]] = (),
) -> AsyncClient:
    """Opens an asyncio client; the arguments mean what they mean for
    :func:`deskd_client.connect`. Call it inside a running event loop."""
    md = credential_metadata(token=token, api_key=api_key, tenant=tenant)
    interceptors = [_Interceptor(md, timeout)]
    channel = (
        grpc.aio.secure_channel(target, credentials, options=options, interceptors=interceptors)
        if credentials is not None
        else grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
    )
    return AsyncClient(channel)
