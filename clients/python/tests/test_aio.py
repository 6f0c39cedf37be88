"""The asyncio client (deskd_client.aio) against a real deskd."""

from __future__ import annotations

import asyncio
import secrets

import grpc
import pytest
from google.protobuf import field_mask_pb2

from deskd_client import (
    DeskdError,
    aio,
    operations_pb2,
    stats_pb2,
    tickets_pb2,
    users_pb2,
)

from .conftest import Principal, Server, World


async def test_current_user(world: World) -> None:
    a = world.admin_a
    async with aio.connect(world.addr, token=a.token, tenant=a.tenant) as client:
        me = await client.users.GetCurrentUser(users_pb2.GetCurrentUserRequest())
    assert me.user.id == a.user
    assert me.tenant_id == a.tenant


async def test_ticket_lifecycle_and_pages(world: World) -> None:
    tag = f"aio-{secrets.token_hex(4)}"
    async with aio.connect(world.addr, token=world.agent_a.token, timeout=10) as client:
        ids = []
        for i in range(3):
            resp = await client.tickets.CreateTicket(
                tickets_pb2.CreateTicketRequest(ticket=tickets_pb2.Ticket(title=f"a{i}", tags=[tag]))
            )
            ids.append(resp.ticket.id)
        seen: list[str] = []
        token = ""
        while True:
            page = await client.tickets.ListTickets(
                tickets_pb2.ListTicketsRequest(
                    page_size=2, page_token=token, tag=tag, order_by="create_time asc"
                )
            )
            seen.extend(t.id for t in page.tickets)
            token = page.next_page_token
            if not token:
                break
        assert seen == ids

        got = (await client.tickets.GetTicket(tickets_pb2.GetTicketRequest(id=ids[0]))).ticket
        updated = (
            await client.tickets.UpdateTicket(
                tickets_pb2.UpdateTicketRequest(
                    ticket=tickets_pb2.Ticket(id=got.id, etag=got.etag, tags=["x", "y"]),
                    update_mask=field_mask_pb2.FieldMask(paths=["tags"]),
                )
            )
        ).ticket
        assert sorted(updated.tags) == ["x", "y"]
        await client.tickets.DeleteTicket(tickets_pb2.DeleteTicketRequest(id=got.id))
        with pytest.raises(DeskdError) as info:
            await client.tickets.GetTicket(tickets_pb2.GetTicketRequest(id=got.id))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_bad_request_has_field_path(world: World) -> None:
    async with aio.connect(world.addr, token=world.admin_a.token) as client:
        with pytest.raises(DeskdError) as info:
            await client.tickets.CreateTicket(
                tickets_pb2.CreateTicketRequest(ticket=tickets_pb2.Ticket(title=""))
            )
    err = info.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.reason == "INVALID_ARGUMENT"
    v = err.violation("ticket.title")
    assert v is not None and v.reason == "REQUIRED"
    assert err.request_id


async def test_tenant_isolation(world: World) -> None:
    async with aio.connect(world.addr, token=world.admin_a.token) as a:
        ticket = (
            await a.tickets.CreateTicket(
                tickets_pb2.CreateTicketRequest(ticket=tickets_pb2.Ticket(title="private"))
            )
        ).ticket
    async with aio.connect(world.addr, token=world.admin_b.token) as b:
        with pytest.raises(DeskdError) as info:
            await b.tickets.GetTicket(tickets_pb2.GetTicketRequest(id=ticket.id))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert info.value.reason == "NOT_FOUND"


async def test_users_and_api_key(world: World) -> None:
    async with aio.connect(world.addr, token=world.admin_a.token) as admin:
        user = (
            await admin.users.CreateUser(
                users_pb2.CreateUserRequest(
                    user=users_pb2.User(
                        email=f"aio-{secrets.token_hex(3)}@example.test", role=users_pb2.ROLE_AGENT
                    )
                )
            )
        ).user
        listed = await admin.users.ListUsers(users_pb2.ListUsersRequest(page_size=500))
        assert user.id in {u.id for u in listed.users}
        created = await admin.users.CreateApiKey(
            users_pb2.CreateApiKeyRequest(
                api_key=users_pb2.ApiKey(display_name="py-aio", scopes=["tickets:write"])
            )
        )
    async with aio.connect(world.addr, api_key=created.key) as svc:
        me = await svc.users.GetCurrentUser(users_pb2.GetCurrentUserRequest())
        assert me.api_key_id == created.api_key.id
        t = await svc.tickets.CreateTicket(
            tickets_pb2.CreateTicketRequest(ticket=tickets_pb2.Ticket(title="from a service"))
        )
        assert t.ticket.reporter_id == me.user.id


async def test_stats_and_export(world: World) -> None:
    async with aio.connect(world.addr, token=world.admin_a.token) as client:
        stats = await client.stats.GetTicketStats(
            stats_pb2.GetTicketStatsRequest(top_assignees_limit=5)
        )
        assert stats.created_count >= 0
        assert stats.HasField("backlog")
        op = (
            await client.tickets.ExportTickets(
                tickets_pb2.ExportTicketsRequest(format=tickets_pb2.EXPORT_FORMAT_JSONL)
            )
        ).operation
        for _ in range(150):
            got = (
                await client.operations.GetOperation(
                    operations_pb2.GetOperationRequest(name=op.name)
                )
            ).operation
            if got.done:
                break
            await asyncio.sleep(0.2)
        assert got.done
        assert got.metadata.state == operations_pb2.OPERATION_STATE_SUCCEEDED
        assert got.response.format == "jsonl"
        page = await client.operations.ListOperations(
            operations_pb2.ListOperationsRequest(page_size=100)
        )
        assert op.name in {o.name for o in page.operations}


async def test_rate_limit_has_retry_info(limited_server: Server, fresh_admin: Principal) -> None:
    async with aio.connect(limited_server.addr, token=fresh_admin.token) as client:
        with pytest.raises(DeskdError) as info:
            for _ in range(10):
                await client.users.GetCurrentUser(users_pb2.GetCurrentUserRequest())
    err = info.value
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.reason == "RATE_LIMITED"
    assert err.retry_delay is not None and err.retry_delay.total_seconds() > 0
    assert err.quota_violations[0].subject == f"principal:{fresh_admin.user}"
