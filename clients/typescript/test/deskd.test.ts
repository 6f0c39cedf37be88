/**
 * @deskd/client against a real deskd: `deskd serve` on a fresh database
 * (see harness.ts). Run by scripts/test.sh after compiling with tsc.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import {
  Code,
  ConnectError,
  DeskdError,
  ExportFormat,
  OperationState,
  Role,
  TicketPriority,
  TicketStatus,
  UserKind,
  createDeskdClient,
  decodeError,
  isDeskdError,
  timestampDate,
  type DeskdClient,
  type Ticket,
} from "@deskd/client";
import { DeskdServer, TestDatabase } from "./harness.js";

/** JSON for assertion messages (bigint as text). */
function show(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) => (typeof x === "bigint" ? x.toString() : x));
}

/** Runs `call`, which must fail, and returns its decoded error. */
async function failure(call: () => Promise<unknown>): Promise<DeskdError> {
  try {
    await call();
  } catch (err) {
    assert.ok(err instanceof DeskdError, `expected a DeskdError, got ${String(err)}`);
    assert.ok(err instanceof ConnectError, "a DeskdError is a ConnectError");
    return err;
  }
  assert.fail("the call succeeded");
}

describe("deskd TypeScript client", () => {
  let db: TestDatabase;
  let server: DeskdServer;
  let a: { tenant: string; user: string; token: string; email: string };
  let b: { tenant: string; user: string; token: string; email: string };
  let client: DeskdClient;
  let other: DeskdClient;
  let tokenCalls = 0;
  const clients: DeskdClient[] = [];

  before(async () => {
    db = await TestDatabase.create();
    server = await DeskdServer.start(db);
    a = await server.provision("acme");
    b = await server.provision("globex");
    client = createDeskdClient({
      baseUrl: server.baseUrl,
      // A function: called before every request, as a refreshing token source would be.
      token: async () => {
        tokenCalls++;
        return a.token;
      },
      tenant: a.tenant,
      timeoutMs: 15_000,
    });
    other = createDeskdClient({ baseUrl: server.baseUrl, token: b.token, tenant: b.tenant });
    clients.push(client, other);
  });

  after(async () => {
    for (const c of clients) {
      c.close();
    }
    await server?.stop();
    await db?.drop();
  });

  describe("UsersService", () => {
    it("GetCurrentUser describes the caller, with the token from the function", async () => {
      const before = tokenCalls;
      const res = await client.users.getCurrentUser({});
      assert.equal(res.user?.id, a.user);
      assert.equal(res.user?.email, a.email);
      assert.equal(res.user?.role, Role.ADMIN);
      assert.equal(res.user?.kind, UserKind.PERSON);
      assert.equal(res.tenantId, a.tenant);
      assert.ok(res.permissions.includes("tickets:write"), res.permissions.join(","));
      assert.equal(res.apiKeyId, "");
      assert.equal(tokenCalls, before + 1);
    });

    it("CreateUser creates an agent (e-mail normalised)", async () => {
      const email = `Agent.${Date.now()}@Acme.Example`;
      const res = await client.users.createUser({
        user: { email: `  ${email} `, role: Role.AGENT, displayName: "Agent Smith" },
        requestId: crypto.randomUUID(),
      });
      assert.match(res.user?.id ?? "", /^[0-9a-f-]{36}$/);
      assert.equal(res.user?.email, email.toLowerCase());
      assert.equal(res.user?.role, Role.AGENT);
      assert.equal(res.user?.active, true);
      assert.ok(res.user?.createTime !== undefined);
    });

    it("an API key is sent as x-api-key", async () => {
      const created = await client.users.createApiKey({
        apiKey: { displayName: "ts-client test", scopes: ["tickets:read"] },
      });
      const keyClient = createDeskdClient({ baseUrl: server.baseUrl, apiKey: created.key });
      clients.push(keyClient);
      const me = await keyClient.users.getCurrentUser({});
      assert.equal(me.apiKeyId, created.apiKey?.id);
      assert.equal(me.user?.kind, UserKind.SERVICE_ACCOUNT);
      assert.equal(me.tenantId, a.tenant);
      await keyClient.tickets.listTickets({ pageSize: 1 });
      // tickets:read only: a write is refused with PERMISSION_MISSING and the permission in the metadata.
      const err = await failure(() => keyClient.tickets.createTicket({ ticket: { title: "nope" } }));
      assert.equal(err.codeName, "PERMISSION_DENIED");
      assert.equal(err.reason, "PERMISSION_MISSING");
      assert.equal(err.errorMetadata["permission"], "tickets:write");
    });

    it("no credential → UNAUTHENTICATED / CREDENTIAL_MISSING", async () => {
      const anon = createDeskdClient({ baseUrl: server.baseUrl });
      clients.push(anon);
      const err = await failure(() => anon.users.getCurrentUser({}));
      assert.equal(err.code, Code.Unauthenticated);
      assert.equal(err.codeName, "UNAUTHENTICATED");
      assert.equal(err.reason, "CREDENTIAL_MISSING");
      assert.equal(err.domain, "deskd");
    });

    it("token and apiKey together are refused before any call", () => {
      assert.throws(() => createDeskdClient({ baseUrl: server.baseUrl, token: "x", apiKey: "y" }), TypeError);
    });
  });

  describe("TicketsService", () => {
    let ticket: Ticket;

    it("CreateTicket, then GetTicket", async () => {
      const created = await client.tickets.createTicket({
        ticket: {
          title: "  Printer on fire  ",
          description: "Third floor.",
          priority: TicketPriority.HIGH,
          tags: ["hardware", "urgent", "hardware"],
        },
        requestId: crypto.randomUUID(),
      });
      assert.ok(created.ticket);
      ticket = created.ticket;
      assert.match(ticket.id, /^[0-9a-f-]{36}$/);
      assert.equal(ticket.title, "Printer on fire");
      assert.equal(ticket.status, TicketStatus.OPEN);
      assert.equal(ticket.priority, TicketPriority.HIGH);
      assert.equal(ticket.reporterId, a.user);
      assert.deepEqual([...ticket.tags].sort(), ["hardware", "urgent"]);
      assert.ok(ticket.createTime && timestampDate(ticket.createTime).getTime() > Date.now() - 60_000);
      assert.notEqual(ticket.etag, "");

      const got = await client.tickets.getTicket({ id: ticket.id });
      assert.equal(got.ticket?.id, ticket.id);
      assert.equal(got.ticket?.description, "Third floor.");
    });

    it("ListTickets pages through the tenant's tickets", async () => {
      for (let i = 0; i < 3; i++) {
        await client.tickets.createTicket({ ticket: { title: `Bulk ${i}`, tags: ["bulk"] } });
      }
      const seen: string[] = [];
      let pageToken = "";
      let pages = 0;
      do {
        const page = await client.tickets.listTickets({ pageSize: 2, pageToken, tag: "bulk", orderBy: "create_time asc" });
        seen.push(...page.tickets.map((t) => t.title));
        pageToken = page.nextPageToken;
        pages++;
      } while (pageToken !== "" && pages < 10);
      assert.deepEqual(seen, ["Bulk 0", "Bulk 1", "Bulk 2"]);
      assert.equal(pages, 2);
      const all = await client.tickets.listTickets({});
      assert.ok(all.tickets.some((t) => t.id === ticket.id));
    });

    it("UpdateTicket changes the masked fields only", async () => {
      const res = await client.tickets.updateTicket({
        ticket: { id: ticket.id, title: "Printer extinguished", status: TicketStatus.RESOLVED, description: "ignored" },
        updateMask: { paths: ["title", "status"] },
      });
      assert.equal(res.ticket?.title, "Printer extinguished");
      assert.equal(res.ticket?.status, TicketStatus.RESOLVED);
      assert.equal(res.ticket?.description, "Third floor.");
      assert.ok(res.ticket?.resolveTime !== undefined);
      assert.notEqual(res.ticket?.etag, ticket.etag);
    });

    it("a stale etag → ABORTED / ETAG_MISMATCH with PreconditionFailure", async () => {
      const err = await failure(() =>
        client.tickets.updateTicket({
          ticket: { id: ticket.id, etag: ticket.etag, priority: TicketPriority.LOW },
          updateMask: { paths: ["priority"] },
        }),
      );
      assert.equal(err.codeName, "ABORTED");
      assert.equal(err.reason, "ETAG_MISMATCH");
      assert.equal(err.preconditionViolations[0]?.type, "ETAG_MISMATCH");
    });

    it("CreateTicket with an empty title → INVALID_ARGUMENT with a BadRequest violation on ticket.title", async () => {
      const err = await failure(() => client.tickets.createTicket({ ticket: { title: "   " } }));
      assert.equal(err.code, Code.InvalidArgument);
      assert.equal(err.codeName, "INVALID_ARGUMENT");
      assert.equal(err.reason, "INVALID_ARGUMENT");
      assert.equal(err.domain, "deskd");
      const v = err.violation("ticket.title");
      assert.ok(v, show(err.fieldViolations));
      assert.equal(v.reason, "REQUIRED");
      assert.ok(v.description.length > 0);
      assert.match(err.rawMessage, /ticket\.title/);
      assert.ok(err.requestId && err.requestId.length > 0, "RequestInfo.request_id");
      assert.equal(err.requestId, err.metadata.get("x-request-id"));
      // toJSON is plain data.
      const json = JSON.parse(JSON.stringify(err)) as { fieldViolations: { field: string }[] };
      assert.equal(json.fieldViolations[0]?.field, "ticket.title");
    });

    it("several violations come together, with their field paths", async () => {
      const err = await failure(() =>
        client.tickets.createTicket({ ticket: { title: "x".repeat(201), assigneeId: "not-a-uuid", tags: [""] } }),
      );
      const byField = Object.fromEntries(err.fieldViolations.map((v) => [v.field, v.reason]));
      assert.equal(byField["ticket.title"], "TOO_LONG");
      assert.equal(byField["ticket.assignee_id"], "INVALID_ID");
      assert.equal(byField["ticket.tags[0]"], "INVALID_TAG");
    });

    it("another tenant's ticket is NOT_FOUND", async () => {
      const err = await failure(() => other.tickets.getTicket({ id: ticket.id }));
      assert.equal(err.codeName, "NOT_FOUND");
      assert.equal(err.reason, "NOT_FOUND");
      assert.equal(err.resourceInfo?.resourceName, ticket.id);
      const list = await other.tickets.listTickets({});
      assert.equal(list.tickets.length, 0);
    });

    it("x-tenant-id of another tenant → PERMISSION_DENIED / TENANT_MISMATCH", async () => {
      const wrong = createDeskdClient({ baseUrl: server.baseUrl, token: a.token, tenant: b.tenant });
      clients.push(wrong);
      const err = await failure(() => wrong.tickets.getTicket({ id: ticket.id }));
      assert.ok(isDeskdError(err, "PERMISSION_DENIED", "TENANT_MISMATCH"), show(err));
    });

    it("DeleteTicket, then GetTicket → NOT_FOUND", async () => {
      const victim = await client.tickets.createTicket({ ticket: { title: "Delete me" } });
      const id = victim.ticket?.id ?? "";
      await client.tickets.deleteTicket({ id });
      const err = await failure(() => client.tickets.getTicket({ id }));
      assert.equal(err.codeName, "NOT_FOUND");
      assert.equal(err.resourceInfo?.resourceType, err.errorMetadata["resource_type"]);
    });
  });

  describe("StatsService", () => {
    it("GetTicketStats counts the tenant's tickets", async () => {
      const res = await client.stats.getTicketStats({});
      assert.ok(res.startTime && res.endTime && res.computeTime);
      // Created so far in tenant A: the printer ticket and three bulk tickets (the deleted one is gone).
      assert.equal(res.createdCount, 4n);
      const byStatus = res.createdByStatus.reduce((sum, s) => sum + s.count, 0n);
      assert.equal(byStatus, res.createdCount);
      assert.equal(res.createdByStatus.find((s) => s.status === TicketStatus.RESOLVED)?.count, 1n);
      assert.equal(res.resolution?.resolvedCount, 1n);
      assert.equal(res.backlog?.openCount, 3n);
      assert.ok(res.dailyCounts.length >= 30);
      const empty = await other.stats.getTicketStats({});
      assert.equal(empty.createdCount, 0n);
    });

    it("a reversed window → INVALID_ARGUMENT on end_time", async () => {
      const now = BigInt(Math.floor(Date.now() / 1000));
      const err = await failure(() =>
        client.stats.getTicketStats({ startTime: { seconds: now }, endTime: { seconds: now - 3600n } }),
      );
      assert.equal(err.violation("end_time")?.reason, "INVALID_RANGE");
    });
  });

  describe("OperationsService", () => {
    it("ExportTickets, then GetOperation until done", async () => {
      const started = await client.tickets.exportTickets({ format: ExportFormat.JSONL });
      const name = started.operation?.name ?? "";
      assert.match(name, /^operations\/[0-9a-f-]{36}$/);
      let op = started.operation;
      const deadline = Date.now() + 30_000;
      while (!op?.done) {
        assert.ok(Date.now() < deadline, `operation not done in 30 s: ${show(op?.metadata?.state)}`);
        await sleep(200);
        op = (await client.operations.getOperation({ name })).operation;
      }
      assert.equal(op.metadata?.state, OperationState.SUCCEEDED);
      assert.equal(op.metadata?.kind, "tickets.export");
      assert.equal(op.result.case, "response", show(op.result));
      if (op.result.case === "response") {
        assert.equal(op.result.value.rowCount, 4n);
        assert.equal(op.result.value.format, "jsonl");
        assert.match(op.result.value.uri, /^file:\/\//);
      }
      const listed = await client.operations.listOperations({});
      assert.ok(listed.operations.some((o) => o.name === name));
      const hidden = await failure(() => other.operations.getOperation({ name }));
      assert.equal(hidden.codeName, "NOT_FOUND");
    });

    it("a malformed name → INVALID_OPERATION_NAME", async () => {
      const err = await failure(() => client.operations.getOperation({ name: "nope" }));
      assert.equal(err.violation("name")?.reason, "INVALID_OPERATION_NAME");
    });
  });

  describe("decodeError", () => {
    it("wraps anything into a DeskdError", () => {
      const e = decodeError(new Error("boom"));
      assert.ok(e instanceof DeskdError);
      assert.equal(e.codeName, "UNKNOWN");
      assert.equal(e.reason, undefined);
      assert.deepEqual(e.fieldViolations, []);
      assert.equal(decodeError(e), e);
      const plain = decodeError(new ConnectError("gone", Code.NotFound));
      assert.equal(plain.codeName, "NOT_FOUND");
      assert.equal(plain.rawMessage, "gone");
    });

    it("with decodeErrors: false the plain ConnectError comes through, and decodeError decodes it", async () => {
      const raw = createDeskdClient({ baseUrl: server.baseUrl, token: a.token, decodeErrors: false });
      clients.push(raw);
      try {
        await raw.tickets.createTicket({ ticket: { title: "" } });
        assert.fail("the call succeeded");
      } catch (err) {
        assert.ok(err instanceof ConnectError);
        assert.ok(!(err instanceof DeskdError));
        assert.equal(decodeError(err).violation("ticket.title")?.reason, "REQUIRED");
      }
    });
  });
});

describe("rate limiting", () => {
  let db: TestDatabase;
  let server: DeskdServer;
  let client: DeskdClient;

  before(async () => {
    db = await TestDatabase.create();
    server = await DeskdServer.start(db, {
      DESKD_RATE_LIMIT__PRINCIPAL__REQUESTS: "1",
      DESKD_RATE_LIMIT__PRINCIPAL__BURST: "1",
      DESKD_RATE_LIMIT__PRINCIPAL__PERIOD: "1h",
    });
    const a = await server.provision("limited");
    client = createDeskdClient({ baseUrl: server.baseUrl, token: a.token, tenant: a.tenant });
  });

  after(async () => {
    client?.close();
    await server?.stop();
    await db?.drop();
  });

  it("RESOURCE_EXHAUSTED / RATE_LIMITED carries RetryInfo and QuotaFailure", async () => {
    await client.users.getCurrentUser({});
    const err = await failure(() => client.users.getCurrentUser({}));
    assert.equal(err.code, Code.ResourceExhausted);
    assert.equal(err.codeName, "RESOURCE_EXHAUSTED");
    assert.equal(err.reason, "RATE_LIMITED");
    assert.ok(err.retryDelayMs !== undefined, "RetryInfo.retry_delay");
    // One request per hour: the next one is allowed in up to an hour.
    assert.ok(err.retryDelayMs > 60_000 && err.retryDelayMs <= 3_600_000, String(err.retryDelayMs));
    // ErrorInfo.metadata.retry_after_ms says the same in whole milliseconds.
    assert.ok(Math.abs(Number(err.errorMetadata["retry_after_ms"]) - err.retryDelayMs) <= 1, show(err));
    assert.match(err.quotaViolations[0]?.subject ?? "", /^principal:/);
    assert.ok(Number(err.metadata.get("retry-after")) >= err.retryDelayMs / 1000);
  });
});
