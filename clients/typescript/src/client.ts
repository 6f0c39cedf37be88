import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import type * as http2 from "node:http2";
import { decodeError } from "./errors.js";
import { OperationsService } from "./gen/deskd/operations/v1/operations_pb.js";
import { StatsService } from "./gen/deskd/stats/v1/stats_pb.js";
import { TicketsService } from "./gen/deskd/tickets/v1/tickets_pb.js";
import { UsersService } from "./gen/deskd/users/v1/users_pb.js";

/** A credential value, or a function that returns the current one (called before every request, so it can refresh). */
export type Credential = string | (() => string | Promise<string>);

/** Options of `createDeskdClient`. */
export interface DeskdClientOptions {
  /** The server, e.g. `http://127.0.0.1:50051` (plaintext HTTP/2) or `https://deskd.example.com`. */
  baseUrl: string;
  /** A JWT or an API key, sent as `authorization: Bearer <token>`. Exclusive with `apiKey`. */
  token?: Credential | undefined;
  /** An API key (`dsk_…`), sent as `x-api-key`. Exclusive with `token`. */
  apiKey?: Credential | undefined;
  /** The tenant id, sent as `x-tenant-id`: the server refuses the call (PERMISSION_DENIED, TENANT_MISMATCH) when it is not the credential's tenant. */
  tenant?: string | undefined;
  /** The default deadline of each call in milliseconds (sent as `grpc-timeout`); a call's own `timeoutMs` wins. */
  timeoutMs?: number | undefined;
  /** Turn thrown `ConnectError`s into `DeskdError`s (default true). */
  decodeErrors?: boolean | undefined;
  /** More interceptors, run after the credential one. */
  interceptors?: Interceptor[] | undefined;
  /** Options of the HTTP/2 session, e.g. TLS `ca` or `rejectUnauthorized`. */
  nodeOptions?: http2.ClientSessionOptions | http2.SecureClientSessionOptions | undefined;
}

/** The four deskd services, sharing one HTTP/2 connection. */
export interface DeskdClient {
  readonly tickets: Client<typeof TicketsService>;
  readonly users: Client<typeof UsersService>;
  readonly stats: Client<typeof StatsService>;
  readonly operations: Client<typeof OperationsService>;
  readonly transport: Transport;
  /** Closes the HTTP/2 connection (calls in flight fail). The client reconnects if used again. */
  close(): void;
}

async function resolve(credential: Credential): Promise<string> {
  return typeof credential === "function" ? await credential() : credential;
}

/**
 * The interceptor that attaches deskd's credential and tenant headers:
 * `authorization: Bearer <token>` or `x-api-key: <apiKey>`, and `x-tenant-id`.
 */
export function credentialsInterceptor(opts: Pick<DeskdClientOptions, "token" | "apiKey" | "tenant">): Interceptor {
  const { token, apiKey, tenant } = opts;
  if (token !== undefined && apiKey !== undefined) {
    // The server would refuse every call with CREDENTIAL_AMBIGUOUS.
    throw new TypeError("deskd: give either token or apiKey, not both");
  }
  return (next) => async (req) => {
    if (token !== undefined) {
      req.header.set("authorization", `Bearer ${await resolve(token)}`);
    } else if (apiKey !== undefined) {
      req.header.set("x-api-key", await resolve(apiKey));
    }
    if (tenant !== undefined && tenant !== "") {
      req.header.set("x-tenant-id", tenant);
    }
    return next(req);
  };
}

/** The interceptor that rethrows every failure of a call as a `DeskdError`. */
export const decodeErrorsInterceptor: Interceptor = (next) => async (req) => {
  try {
    return await next(req);
  } catch (err) {
    throw decodeError(err);
  }
};

/**
 * Makes clients of deskd's TicketsService, UsersService, StatsService and
 * OperationsService over gRPC (HTTP/2), with the caller's credential and tenant
 * attached to every call and errors decoded into `DeskdError`.
 */
export function createDeskdClient(options: DeskdClientOptions): DeskdClient {
  const interceptors: Interceptor[] = [];
  if (options.decodeErrors ?? true) {
    interceptors.push(decodeErrorsInterceptor);
  }
  interceptors.push(credentialsInterceptor(options), ...(options.interceptors ?? []));

  // Our own session manager, so that close() can end the connection.
  const sessionManager = new Http2SessionManager(options.baseUrl, {}, options.nodeOptions);
  const transport = createGrpcTransport({
    baseUrl: options.baseUrl,
    sessionManager,
    interceptors,
    ...(options.timeoutMs !== undefined ? { defaultTimeoutMs: options.timeoutMs } : {}),
  });
  return {
    tickets: createClient(TicketsService, transport),
    users: createClient(UsersService, transport),
    stats: createClient(StatsService, transport),
    operations: createClient(OperationsService, transport),
    transport,
    close() {
      sessionManager.abort();
    },
  };
}
