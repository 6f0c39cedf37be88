/**
 * Rich-error decoding for deskd.
 *
 * deskd answers every application error with a `google.rpc.Status` in the
 * `grpc-status-details-bin` trailer (docs/errors.md): always an `ErrorInfo`
 * (`domain = "deskd"`, an UPPER_SNAKE `reason`, `metadata`) and a
 * `RequestInfo` (the request id, also echoed as `x-request-id`), plus
 * `BadRequest`, `RetryInfo`, `ResourceInfo`, `QuotaFailure` or
 * `PreconditionFailure` depending on the error. Connect parses the trailer into
 * `ConnectError.details`; this module decodes them with the google.rpc
 * descriptors generated from `proto/google/rpc/error_details.proto`.
 */
import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  BadRequestSchema,
  ErrorInfoSchema,
  PreconditionFailureSchema,
  QuotaFailureSchema,
  RequestInfoSchema,
  ResourceInfoSchema,
  RetryInfoSchema,
} from "./gen/google/rpc/error_details_pb.js";

/** The gRPC status code names, as deskd's documentation spells them. */
export type StatusCodeName =
  | "OK"
  | "CANCELLED"
  | "UNKNOWN"
  | "INVALID_ARGUMENT"
  | "DEADLINE_EXCEEDED"
  | "NOT_FOUND"
  | "ALREADY_EXISTS"
  | "PERMISSION_DENIED"
  | "RESOURCE_EXHAUSTED"
  | "FAILED_PRECONDITION"
  | "ABORTED"
  | "OUT_OF_RANGE"
  | "UNIMPLEMENTED"
  | "INTERNAL"
  | "UNAVAILABLE"
  | "DATA_LOSS"
  | "UNAUTHENTICATED";

const CODE_NAMES: readonly StatusCodeName[] = [
  "OK",
  "CANCELLED",
  "UNKNOWN",
  "INVALID_ARGUMENT",
  "DEADLINE_EXCEEDED",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED",
  "FAILED_PRECONDITION",
  "ABORTED",
  "OUT_OF_RANGE",
  "UNIMPLEMENTED",
  "INTERNAL",
  "UNAVAILABLE",
  "DATA_LOSS",
  "UNAUTHENTICATED",
];

/** The gRPC name of a status code, e.g. `INVALID_ARGUMENT` for 3. */
export function codeName(code: Code): StatusCodeName {
  return CODE_NAMES[code] ?? "UNKNOWN";
}

/** One `google.rpc.BadRequest.FieldViolation`, e.g. `{field: "ticket.title", reason: "REQUIRED"}`. */
export interface FieldViolation {
  /** The path of the offending field, e.g. `ticket.title` or `ticket.tags[2]`. */
  readonly field: string;
  /** The specific reason, e.g. `REQUIRED`, `TOO_LONG`, `INVALID_ID`. */
  readonly reason: string;
  /** A developer-facing description. */
  readonly description: string;
}

/** One `google.rpc.QuotaFailure.Violation`. */
export interface QuotaViolation {
  /** `tenant:<id>` or `principal:<id>`. */
  readonly subject: string;
  readonly description: string;
}

/** One `google.rpc.PreconditionFailure.Violation`. */
export interface PreconditionViolation {
  /** e.g. `ETAG_MISMATCH` or `SELF_LOCKOUT`. */
  readonly type: string;
  readonly subject: string;
  readonly description: string;
}

/** A `google.rpc.ResourceInfo`. */
export interface ResourceInfo {
  readonly resourceType: string;
  readonly resourceName: string;
  readonly owner: string;
  readonly description: string;
}

/**
 * An error of a deskd call with its rich details decoded.
 *
 * It is a `ConnectError` (so `instanceof ConnectError`, `ConnectError.from`, `code`, `rawMessage`,
 * `metadata` and `findDetails` work as usual); the clients made by
 * `createDeskdClient` throw it for every failed call.
 */
export class DeskdError extends ConnectError {
  /**
   * Stays "ConnectError": Connect's `instanceof ConnectError` accepts an error
   * whose prototype is not ConnectError's only when its name is "ConnectError"
   * (a check meant to work across copies of the library).
   */
  override name = "ConnectError";
  /** The gRPC name of `code`, e.g. `INVALID_ARGUMENT`. */
  readonly codeName: StatusCodeName;
  /** `ErrorInfo.reason`, e.g. `NOT_FOUND`, `RATE_LIMITED`, `TOKEN_EXPIRED`; undefined without ErrorInfo. */
  readonly reason: string | undefined;
  /** `ErrorInfo.domain` (`deskd`); undefined without ErrorInfo. */
  readonly domain: string | undefined;
  /** `ErrorInfo.metadata`, e.g. `{permission: "tickets:write"}`; empty without ErrorInfo. */
  readonly errorMetadata: Readonly<Record<string, string>>;
  /** `BadRequest.field_violations`, in the server's order. */
  readonly fieldViolations: readonly FieldViolation[];
  /** `RetryInfo.retry_delay` in milliseconds (rounded up: wait at least this long); undefined without RetryInfo. */
  readonly retryDelayMs: number | undefined;
  /** `RequestInfo.request_id`, else the `x-request-id` response header; undefined when neither came. */
  readonly requestId: string | undefined;
  /** `ResourceInfo`, on NOT_FOUND / ALREADY_EXISTS / ABORTED. */
  readonly resourceInfo: ResourceInfo | undefined;
  /** `QuotaFailure.violations`, on RATE_LIMITED. */
  readonly quotaViolations: readonly QuotaViolation[];
  /** `PreconditionFailure.violations`, on ETAG_MISMATCH / FAILED_PRECONDITION. */
  readonly preconditionViolations: readonly PreconditionViolation[];

  constructor(source: ConnectError) {
    super(source.rawMessage, source.code, source.metadata, undefined, source.cause ?? source);
    this.details = source.details;
    this.codeName = codeName(source.code);

    const info = firstDetail(source, ErrorInfoSchema);
    this.reason = info?.reason;
    this.domain = info?.domain;
    this.errorMetadata = Object.freeze({ ...(info?.metadata ?? {}) });

    this.fieldViolations = safeFind(source, BadRequestSchema).flatMap((d) =>
      d.fieldViolations.map((v) => ({ field: v.field, reason: v.reason, description: v.description })),
    );

    const retry = firstDetail(source, RetryInfoSchema);
    this.retryDelayMs =
      retry?.retryDelay === undefined
        ? undefined
        : Number(retry.retryDelay.seconds) * 1000 + Math.ceil(retry.retryDelay.nanos / 1e6);

    const requestInfo = firstDetail(source, RequestInfoSchema);
    this.requestId = requestInfo?.requestId || source.metadata.get("x-request-id") || undefined;

    const resource = firstDetail(source, ResourceInfoSchema);
    this.resourceInfo =
      resource === undefined
        ? undefined
        : {
            resourceType: resource.resourceType,
            resourceName: resource.resourceName,
            owner: resource.owner,
            description: resource.description,
          };

    this.quotaViolations = safeFind(source, QuotaFailureSchema).flatMap((d) =>
      d.violations.map((v) => ({ subject: v.subject, description: v.description })),
    );
    this.preconditionViolations = safeFind(source, PreconditionFailureSchema).flatMap((d) =>
      d.violations.map((v) => ({ type: v.type, subject: v.subject, description: v.description })),
    );
    Object.setPrototypeOf(this, DeskdError.prototype);
  }

  /**
   * `instanceof DeskdError` by the prototype chain (ConnectError's own check,
   * which DeskdError would otherwise inherit, accepts every ConnectError).
   */
  static override [Symbol.hasInstance](v: unknown): boolean {
    return typeof v === "object" && v !== null && Object.prototype.isPrototypeOf.call(DeskdError.prototype, v);
  }

  /** The violation of one field path, e.g. `violation("ticket.title")`. */
  violation(field: string): FieldViolation | undefined {
    return this.fieldViolations.find((v) => v.field === field);
  }

  /** A plain object for logs and assertions (no class instances, no bigint). */
  toJSON(): DecodedError {
    return {
      code: this.code,
      codeName: this.codeName,
      message: this.rawMessage,
      reason: this.reason,
      domain: this.domain,
      metadata: this.errorMetadata,
      fieldViolations: this.fieldViolations,
      retryDelayMs: this.retryDelayMs,
      requestId: this.requestId,
      resourceInfo: this.resourceInfo,
      quotaViolations: this.quotaViolations,
      preconditionViolations: this.preconditionViolations,
    };
  }
}

/** The JSON shape of a `DeskdError` (`DeskdError.toJSON()`). */
export interface DecodedError {
  readonly code: Code;
  readonly codeName: StatusCodeName;
  readonly message: string;
  readonly reason: string | undefined;
  readonly domain: string | undefined;
  readonly metadata: Readonly<Record<string, string>>;
  readonly fieldViolations: readonly FieldViolation[];
  readonly retryDelayMs: number | undefined;
  readonly requestId: string | undefined;
  readonly resourceInfo: ResourceInfo | undefined;
  readonly quotaViolations: readonly QuotaViolation[];
  readonly preconditionViolations: readonly PreconditionViolation[];
}

/**
 * Turns anything a call threw into a `DeskdError`: a `DeskdError` is returned
 * as it is, a `ConnectError` is decoded, anything else is wrapped the way
 * `ConnectError.from` does (an abort becomes CANCELLED, the rest UNKNOWN).
 */
export function decodeError(err: unknown): DeskdError {
  if (err instanceof DeskdError) {
    return err;
  }
  return new DeskdError(ConnectError.from(err));
}

/** Whether `err` is a deskd error with this code name and, if given, this `ErrorInfo.reason`. */
export function isDeskdError<C extends StatusCodeName = StatusCodeName>(
  err: unknown,
  code?: C,
  reason?: string,
): err is DeskdError & { readonly codeName: C } {
  if (!(err instanceof DeskdError)) {
    return false;
  }
  return (code === undefined || err.codeName === code) && (reason === undefined || err.reason === reason);
}

// A detail that does not decode must not hide the error itself.
function safeFind<Desc extends DescMessage>(err: ConnectError, desc: Desc): MessageShape<Desc>[] {
  try {
    return err.findDetails(desc);
  } catch {
    return [];
  }
}

function firstDetail<Desc extends DescMessage>(err: ConnectError, desc: Desc): MessageShape<Desc> | undefined {
  return safeFind(err, desc)[0];
}

export { Code, ConnectError };
