/**
 * @deskd/client: a TypeScript client for deskd over gRPC (HTTP/2).
 *
 * - `createDeskdClient` makes the four service clients with credentials,
 *   tenant and a default deadline attached;
 * - `DeskdError` / `decodeError` expose deskd's rich error details;
 * - the generated message types, schemas and enums of deskd's API are
 *   re-exported here; build messages with `create(XSchema, {...})`.
 */
export {
  createDeskdClient,
  credentialsInterceptor,
  decodeErrorsInterceptor,
  type Credential,
  type DeskdClient,
  type DeskdClientOptions,
} from "./client.js";
export {
  Code,
  ConnectError,
  DeskdError,
  codeName,
  decodeError,
  isDeskdError,
  type DecodedError,
  type FieldViolation,
  type PreconditionViolation,
  type QuotaViolation,
  type ResourceInfo,
  type StatusCodeName,
} from "./errors.js";

export * from "./gen/deskd/operations/v1/operations_pb.js";
export * from "./gen/deskd/stats/v1/stats_pb.js";
export * from "./gen/deskd/tickets/v1/tickets_pb.js";
export * from "./gen/deskd/users/v1/users_pb.js";

// Conveniences from protobuf-es, so that simple callers need no second import.
export { create, fromJson, toJson, type MessageInitShape } from "@bufbuild/protobuf";
export {
  FieldMaskSchema,
  TimestampSchema,
  DurationSchema,
  timestampDate,
  timestampFromDate,
  timestampNow,
  type Duration,
  type FieldMask,
  type Timestamp,
} from "@bufbuild/protobuf/wkt";
