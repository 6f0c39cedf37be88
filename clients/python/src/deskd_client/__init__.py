"""deskd_client: a typed Python client for deskd's gRPC API.

Quick start::

    import deskd_client
    from deskd_client import tickets_pb2

    with deskd_client.connect("127.0.0.1:50051", token=jwt) as client:
        created = client.tickets.CreateTicket(
            tickets_pb2.CreateTicketRequest(ticket=tickets_pb2.Ticket(title="Printer on fire"))
        )
        try:
            client.tickets.CreateTicket(tickets_pb2.CreateTicketRequest(ticket=tickets_pb2.Ticket()))
        except deskd_client.DeskdError as e:
            print(e.code(), e.reason, e.field_violations)

The asyncio twin is :func:`deskd_client.aio.connect`. The message and stub
modules generated from deskd's .proto files are re-exported here
(``tickets_pb2``, ``tickets_pb2_grpc``, ``users_pb2``, ...).
"""

from deskd_client import aio
from deskd_client._common import DEFAULT_TIMEOUT
from deskd_client._gen.deskd.operations.v1 import operations_pb2, operations_pb2_grpc
from deskd_client._gen.deskd.stats.v1 import stats_pb2, stats_pb2_grpc
from deskd_client._gen.deskd.tickets.v1 import tickets_pb2, tickets_pb2_grpc
from deskd_client._gen.deskd.users.v1 import users_pb2, users_pb2_grpc
from deskd_client.client import Client, connect
from deskd_client.errors import (
    DeskdError,
    FieldViolation,
    PreconditionViolation,
    QuotaViolation,
    ResourceInfo,
    decode,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "Client",
    "DeskdError",
    "FieldViolation",
    "PreconditionViolation",
    "QuotaViolation",
    "ResourceInfo",
    "aio",
    "connect",
    "decode",
    "operations_pb2",
    "operations_pb2_grpc",
    "stats_pb2",
    "stats_pb2_grpc",
    "tickets_pb2",
    "tickets_pb2_grpc",
    "users_pb2",
    "users_pb2_grpc",
]
