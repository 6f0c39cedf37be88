"""The synchronous client against a real deskd: every service, rich errors,
credentials, tenant isolation."""

from __future__ import annotations

import secrets

import grpc
import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2

import deskd_client
from deskd_client import (
    DeskdError,
    operations_pb2,
    stats_pb2,
    tickets_pb2,
    users_pb2,
)

from .conftest import Deskd, Principal, Server, World, wait_until


def test_current_user_carries_token_and_tenant(world: World) -> None:
    a = world.admin_a
    with deskd_client.connect(world.addr, token=a.token, tenant=a.tenant) as client:
        me = client.users.GetCurrentUser(users_pb2.GetCurrentUserRequest())
    assert me.user.id == a.user
    assert me.tenant_id == a.tenant
    assert "tickets:write" in me.permissions
    assert me.api_key_id == ""


def test_missing_credential_is_unauthenticated(world: World) -> None:
    with deskd_client.connect(world.addr) as client:
        with pytest.raises(DeskdError) as info:
            client.users.GetCurrentUser(users_pb2.GetCurrentUserRequest())
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert info.value.reason == "CREDENTIAL_MISSING"


def test_other_tenant_header_is_refused(world: World) -> None:
    with deskd_client.connect(
        world.addr, token=world.admin_a.token, tenant=world.admin_b.tenant
    ) as client:
        with pytest.raises(DeskdError) as info:
            client.users.GetCurrentUser(users_pb2.GetCurrentUserRequest())
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert info.value.reason == "TENANT_MISMATCH"


def test_both_credentials_are_rejected_locally() -> None:
    with pytest.raises(ValueError):
        deskd_client.connect("127.0.0.1:1", token="t", api_key="k")


def test_ticket_lifecycle(world: World) -> None:
    a = world.admin_a
    with deskd_client.connect(world.addr, token=a.token, tenant=a.tenant, timeout=10) as client:
        created = client.tickets.CreateTicket(
            tickets_pb2.CreateTicketRequest(
                ticket=tickets_pb2.Ticket(
                    title="  Printer on fire  ",
                    description="third floor",
                    priority=tickets_pb2.TICKET_PRIORITY_HIGH,
                    tags=["hardware"],
                ),
                request_id="01900000-0000-7000-8000-" + secrets.token_hex(6),
            )
        ).ticket
        assert created.id
        assert created.title == "Printer on fire"
        assert created.status == tickets_pb2.TICKET_STATUS_OPEN
        assert created.reporter_id == a.user
        assert created.HasField("create_time")

        got = client.tickets.GetTicket(tickets_pb2.GetTicketRequest(id=created.id)).ticket
        assert got == created

        updated = client.tickets.UpdateTicket(
            tickets_pb2.UpdateTicketRequest(
                ticket=tickets_pb2.Ticket(
                    id=created.id,
                    etag=created.etag,
                    title="Printer extinguished",
                    status=tickets_pb2.TICKET_STATUS_RESOLVED,
                    description="ignored: not in the mask",
                ),
                update_mask=field_mask_pb2.FieldMask(paths=["title", "status"]),
            )
        ).ticket
        assert updated.title == "Printer extinguished"
        assert updated.status == tickets_pb2.TICKET_STATUS_RESOLVED
        assert updated.description == "third floor"
        assert updated.HasField("resolve_time")
        assert updated.etag != created.etag

        # The old etag no longer matches.
        with pytest.raises(DeskdError) as stale:
            client.tickets.DeleteTicket(
                tickets_pb2.DeleteTicketRequest(id=created.id, etag=created.etag)
            )
        assert stale.value.code() == grpc.StatusCode.ABORTED
        assert stale.value.reason == "ETAG_MISMATCH"
        assert stale.value.precondition_violations[0].type == "ETAG_MISMATCH"

        client.tickets.DeleteTicket(tickets_pb2.DeleteTicketRequest(id=created.id, etag=updated.etag))
        with pytest.raises(DeskdError) as gone:
            client.tickets.GetTicket(tickets_pb2.GetTicketRequest(id=created.id))
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND
    assert gone.value.reason == "NOT_FOUND"
    assert gone.value.domain == "deskd"
    assert gone.value.resource_info is not None
    assert gone.value.request_id


def test_list_tickets_walks_pages(world: World) -> None:
    a = world.agent_a
    tag = f"page-{secrets.token_hex(4)}"
    with deskd_client.connect(world.addr, token=a.token) as client:
        ids = [
            client.tickets.CreateTicket(
                tickets_pb2.CreateTicketRequest(ticket=tickets_pb2.Ticket(title=f"t{i}", tags=[tag]))
            ).ticket.id
            for i in range(5)
        ]
        seen: list[str] = []
        token = ""
        pages = 0
        while True:
            page = client.tickets.ListTickets(
                tickets_pb2.ListTicketsRequest(
                    page_size=2, page_token=token, tag=tag, order_by="create_time asc"
                )
            )
            pages += 1
            assert len(page.tickets) <= 2
            seen.extend(t.id for t in page.tickets)
            token = page.next_page_token
            if not token:
                break
    assert seen == ids
    assert pages >= 3


def test_bad_request_has_field_path(world: World) -> None:
    with deskd_client.connect(world.addr, token=world.admin_a.token) as client:
        with pytest.raises(DeskdError) as info:
            client.tickets.CreateTicket(
                tickets_pb2.CreateTicketRequest(ticket=tickets_pb2.Ticket(title="   "))
            )
    err = info.value
    assert isinstance(err, grpc.RpcError)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.reason == "INVALID_ARGUMENT"
    assert err.domain == "deskd"
    violation = err.violation("ticket.title")
    assert violation is not None
    assert violation.reason == "REQUIRED"
    assert violation.description
    assert err.request_id
    assert "ticket.title" in err.message


def test_bad_update_mask_reports_each_path(world: World) -> None:
    with deskd_client.connect(world.addr, token=world.admin_a.token) as client:
        t = client.tickets.CreateTicket(
            tickets_pb2.CreateTicketRequest(ticket=tickets_pb2.Ticket(title="mask"))
        ).ticket
        with pytest.raises(DeskdError) as info:
            client.tickets.UpdateTicket(
                tickets_pb2.UpdateTicketRequest(
                    ticket=tickets_pb2.Ticket(id=t.id),
                    update_mask=field_mask_pb2.FieldMask(paths=["reporter_id", "nope"]),
                )
            )
    reasons = {v.field: v.reason for v in info.value.field_violations}
    assert reasons == {
        "update_mask.paths[0]": "FIELD_NOT_MUTABLE",
        "update_mask.paths[1]": "UNKNOWN_FIELD",
    }


def test_tenant_isolation(world: World) -> None:
    with deskd_client.connect(world.addr, token=world.admin_a.token) as a:
        ticket = a.tickets.CreateTicket(
            tickets_pb2.CreateTicketRequest(ticket=tickets_pb2.Ticket(title="A's secret"))
        ).ticket
    with deskd_client.connect(world.addr, token=world.admin_b.token) as b:
        with pytest.raises(DeskdError) as info:
            b.tickets.GetTicket(tickets_pb2.GetTicketRequest(id=ticket.id))
        listed = b.tickets.ListTickets(tickets_pb2.ListTicketsRequest(page_size=500))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert ticket.id not in {t.id for t in listed.tickets}


def test_users(world: World) -> None:
    with deskd_client.connect(world.addr, token=world.admin_a.token) as client:
        email = f"New.Person-{secrets.token_hex(3)}@Example.test"
        user = client.users.CreateUser(
            users_pb2.CreateUserRequest(
                user=users_pb2.User(email=email, role=users_pb2.ROLE_VIEWER, display_name="New")
            )
        ).user
        assert user.email == email.lower()
        assert user.kind == users_pb2.USER_KIND_PERSON
        assert user.active

        got = client.users.GetUser(users_pb2.GetUserRequest(id=user.id)).user
        assert got.id == user.id

        ids: list[str] = []
        token = ""
        while True:
            page = client.users.ListUsers(
                users_pb2.ListUsersRequest(page_size=1, page_token=token, active=True)
            )
            ids.extend(u.id for u in page.users)
            token = page.next_page_token
            if not token:
                break
        assert {world.admin_a.user, world.agent_a.user, user.id} <= set(ids)
        assert world.admin_b.user not in ids

        with pytest.raises(DeskdError) as info:
            client.users.CreateUser(
                users_pb2.CreateUserRequest(user=users_pb2.User(email="not-an-address"))
            )
    fields = {v.field: v.reason for v in info.value.field_violations}
    assert fields["user.email"] == "INVALID_EMAIL"
    assert fields["user.role"] == "REQUIRED"


def test_viewer_lacks_permission(deskd: Deskd, world: World) -> None:
    viewer = deskd.user(world.admin_a.tenant, "viewer")
    token = deskd.token(world.admin_a.tenant, viewer)
    with deskd_client.connect(world.addr, token=token) as client:
        with pytest.raises(DeskdError) as info:
            client.tickets.CreateTicket(
                tickets_pb2.CreateTicketRequest(ticket=tickets_pb2.Ticket(title="x"))
            )
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert info.value.reason == "PERMISSION_MISSING"
    assert info.value.metadata["permission"] == "tickets:write"


def test_api_key(world: World) -> None:
    with deskd_client.connect(world.addr, token=world.admin_a.token) as admin:
        created = admin.users.CreateApiKey(
            users_pb2.CreateApiKeyRequest(
                api_key=users_pb2.ApiKey(
                    display_name="py-sync", scopes=["tickets:read", "stats:read"]
                )
            )
        )
        keys = admin.users.ListApiKeys(users_pb2.ListApiKeysRequest())
    assert created.key.startswith(created.api_key.key_prefix)
    assert created.api_key.id in {k.id for k in keys.api_keys}

    with deskd_client.connect(world.addr, api_key=created.key, tenant=world.admin_a.tenant) as svc:
        me = svc.users.GetCurrentUser(users_pb2.GetCurrentUserRequest())
        assert me.api_key_id == created.api_key.id
        assert me.user.kind == users_pb2.USER_KIND_SERVICE_ACCOUNT
        svc.tickets.ListTickets(tickets_pb2.ListTicketsRequest(page_size=1))
        with pytest.raises(DeskdError) as info:
            svc.tickets.CreateTicket(
                tickets_pb2.CreateTicketRequest(ticket=tickets_pb2.Ticket(title="x"))
            )
    assert info.value.reason == "PERMISSION_MISSING"
    assert info.value.metadata["permission"] == "tickets:write"


def test_stats(world: World) -> None:
    with deskd_client.connect(world.addr, token=world.agent_a.token) as client:
        client.tickets.CreateTicket(
            tickets_pb2.CreateTicketRequest(ticket=tickets_pb2.Ticket(title="for stats"))
        )
        stats = client.stats.GetTicketStats(stats_pb2.GetTicketStatsRequest())
        assert stats.created_count >= 1
        assert sum(s.count for s in stats.created_by_status) == stats.created_count
        assert stats.daily_counts

        start = timestamp_pb2.Timestamp(seconds=2_000_000_000)
        end = timestamp_pb2.Timestamp(seconds=1_000_000_000)
        with pytest.raises(DeskdError) as info:
            client.stats.GetTicketStats(
                stats_pb2.GetTicketStatsRequest(start_time=start, end_time=end)
            )
    v = info.value.violation("end_time")
    assert v is not None and v.reason == "INVALID_RANGE"


def test_export_and_operations(world: World) -> None:
    with deskd_client.connect(world.addr, token=world.admin_a.token) as client:
        client.tickets.CreateTicket(
            tickets_pb2.CreateTicketRequest(ticket=tickets_pb2.Ticket(title="to export"))
        )
        op = client.tickets.ExportTickets(
            tickets_pb2.ExportTicketsRequest(format=tickets_pb2.EXPORT_FORMAT_CSV)
        ).operation
        assert op.name.startswith("operations/")
        assert op.metadata.kind == "tickets.export"

        def finished() -> operations_pb2.Operation | None:
            o = client.operations.GetOperation(
                operations_pb2.GetOperationRequest(name=op.name)
            ).operation
            return o if o.done else None

        done = wait_until(finished)
        assert done.metadata.state == operations_pb2.OPERATION_STATE_SUCCEEDED
        assert done.WhichOneof("result") == "response"
        assert done.response.format == "csv"
        assert done.response.row_count >= 1

        listed = client.operations.ListOperations(operations_pb2.ListOperationsRequest())
        assert op.name in {o.name for o in listed.operations}

        with pytest.raises(DeskdError) as bad:
            client.operations.GetOperation(operations_pb2.GetOperationRequest(name="nope"))
        assert bad.value.field_violations[0].reason == "INVALID_OPERATION_NAME"

        with pytest.raises(DeskdError) as required:
            client.tickets.ExportTickets(tickets_pb2.ExportTicketsRequest())
        assert required.value.violation("format") is not None
    with deskd_client.connect(world.addr, token=world.admin_b.token) as b:
        with pytest.raises(DeskdError) as other:
            b.operations.GetOperation(operations_pb2.GetOperationRequest(name=op.name))
    assert other.value.code() == grpc.StatusCode.NOT_FOUND


def test_rate_limit_has_retry_info(limited_server: Server, fresh_admin: Principal) -> None:
    with deskd_client.connect(limited_server.addr, token=fresh_admin.token) as client:
        with pytest.raises(DeskdError) as info:
            for _ in range(10):
                client.users.GetCurrentUser(users_pb2.GetCurrentUserRequest())
    err = info.value
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.reason == "RATE_LIMITED"
    assert err.retry_delay is not None and err.retry_delay.total_seconds() > 0
    assert int(err.metadata["retry_after_ms"]) > 0
    assert err.quota_violations[0].subject == f"principal:{fresh_admin.user}"
    assert dict(err.trailing_metadata()).get("retry-after")


def test_decode_plain_rpc_error(world: World) -> None:
    """A stub on a channel of one's own raises plain grpc.RpcError; decode() reads it."""
    channel = grpc.insecure_channel(world.addr)
    try:
        stub = deskd_client.tickets_pb2_grpc.TicketsServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.GetTicket(
                tickets_pb2.GetTicketRequest(id="x"),
                metadata=(("authorization", f"Bearer {world.admin_a.token}"),),
                timeout=10,
            )
    finally:
        channel.close()
    assert not isinstance(info.value, DeskdError)
    err = deskd_client.decode(info.value)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    v = err.violation("id")
    assert v is not None and v.reason == "INVALID_ID"
