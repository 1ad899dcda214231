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

/** A refusal with its reason as google.rpc.ErrorInfo, the same on every protocol. */
export function refusal(reason: Reason, message: string, details: Record<string, string> = {}): ConnectError {
  const info = create(ErrorInfoSchema, { reason, domain: ERROR_DOMAIN, metadata: details });
  return new ConnectError(message, REASON_CODE[reason], undefined, [{ desc: ErrorInfoSchema, value: info }]);
}

/** Reads the ErrorInfo back from an error, whatever produced it. */
export function reasonOf(err: ConnectError): { reason: Reason; metadata: Record<string, string> } | undefined {
  const info = err.findDetails(ErrorInfoSchema).find((i) => i.domain === ERROR_DOMAIN);
  return info ? { reason: info.reason as Reason, metadata: info.metadata } : undefined;
}

export function fromLedgerError(err: LedgerError): ConnectError {
  return refusal(err.reason, err.message, err.details);
}
