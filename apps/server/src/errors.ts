import { Code, ConnectError } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { ErrorInfoSchema } from "@account-balance/proto/google/rpc/error_details_pb.js";
import { LedgerError, type Reason } from "@account-balance/ledger";

/** The ErrorInfo domain of every refusal this service gives. */
export const ERROR_DOMAIN = "account-balance";

/** Spec section 4: each reason has one status on every protocol. */
export const REASON_CODE: Record<Reason, Code> = {
  VALIDATION_FAILED: Code.InvalidArgument,
  UNAUTHENTICATED: Code.Unauthenticated,
  FORBIDDEN: Code.PermissionDenied,
  NOT_FOUND: Code.NotFound,
  // REST 404; on gRPC the module is simply not there.
  MODULE_DISABLED: Code.Unimplemented,
  INSUFFICIENT_BALANCE: Code.FailedPrecondition,
  BALANCE_NOT_ACTIVE: Code.FailedPrecondition,
  BALANCE_EXPIRED: Code.FailedPrecondition,
  AMOUNT_OUT_OF_RANGE: Code.InvalidArgument,
  IDEMPOTENCY_KEY_REUSED: Code.AlreadyExists,
  DUPLICATE_BALANCE: Code.AlreadyExists,
  BALANCE_NOT_EMPTY: Code.FailedPrecondition,
  TOO_MANY_REQUESTS: Code.ResourceExhausted,
  UNAVAILABLE: Code.Unavailable,
  INTERNAL: Code.Internal,
};

// A refusal may quote the caller's input (a map key in a validation message, say). On gRPC
// it travels in the trailers, twice (grpc-message and grpc-status-details-bin): a 30 kB key
// made them larger than an HTTP/2 frame, and the server tore down the whole connection,
// other callers' streams included. Bounded here for every refusal of ours; connect's own
// (a JSON decode error quoting an unknown key) are clipped where gRPC answers are written
// (transport/grpc-message.ts).
export const MAX_MESSAGE_CHARS = 1_000;
export const MAX_DETAIL_CHARS = 200;

/** `text` cut to at most `max` UTF-16 units, "…" included, never inside a surrogate pair. */
export function clip(text: string, max: number): string {
  if (text.length <= max) return text;
  let end = max - 1;
  const last = text.charCodeAt(end - 1);
  if (last >= 0xd800 && last <= 0xdbff) end -= 1;
  return `${text.slice(0, end)}…`;
}

/** A refusal with its reason as google.rpc.ErrorInfo, the same on every protocol. */
export function refusal(reason: Reason, message: string, details: Record<string, string> = {}): ConnectError {
  const metadata = Object.fromEntries(Object.entries(details).map(([k, v]) => [clip(k, MAX_DETAIL_CHARS), clip(v, MAX_DETAIL_CHARS)]));
  const info = create(ErrorInfoSchema, { reason, domain: ERROR_DOMAIN, metadata });
  return new ConnectError(clip(message, MAX_MESSAGE_CHARS), REASON_CODE[reason], undefined, [{ desc: ErrorInfoSchema, value: info }]);
}

/** Reads the ErrorInfo back from an error, whatever produced it. */
export function reasonOf(err: ConnectError): { reason: Reason; metadata: Record<string, string> } | undefined {
  const info = err.findDetails(ErrorInfoSchema).find((i) => i.domain === ERROR_DOMAIN);
  return info ? { reason: info.reason as Reason, metadata: info.metadata } : undefined;
}

export function fromLedgerError(err: LedgerError): ConnectError {
  return refusal(err.reason, err.message, err.details);
}
