import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorInfoSchema } from "./gen/google/rpc/error_details_pb.js";
import { isReason, type Reason } from "./reasons.js";

/** The ErrorInfo domain the account-balance service puts on its refusals. */
export const ERROR_DOMAIN = "account-balance";

/**
 * The ErrorInfo metadata of a refusal. Amounts (keys ending in `_cents`) are bigint, like every
 * amount in this client; other values stay strings. INSUFFICIENT_BALANCE carries
 * `required_cents` and `available_cents`.
 */
export interface ErrorDetails {
  readonly required_cents?: bigint;
  readonly available_cents?: bigint;
  readonly [key: string]: string | bigint | undefined;
}

/**
 * Without an ErrorInfo (a network failure, a proxy's answer) the status code gives the reason.
 * The service sends an ErrorInfo with every refusal of its own, MODULE_DISABLED and
 * TOO_MANY_REQUESTS included, so these cover what others answer: RESOURCE_EXHAUSTED without
 * one is a message over a size limit (a retry would fail the same way), and UNIMPLEMENTED a
 * path nothing serves (a wrong baseUrl, an older server), which no spec reason names.
 */
const REASON_OF_CODE: Partial<Record<Code, Reason>> = {
  [Code.InvalidArgument]: "VALIDATION_FAILED",
  [Code.Unauthenticated]: "UNAUTHENTICATED",
  [Code.PermissionDenied]: "FORBIDDEN",
  [Code.NotFound]: "NOT_FOUND",
  [Code.ResourceExhausted]: "VALIDATION_FAILED",
  [Code.Unavailable]: "UNAVAILABLE",
  [Code.DeadlineExceeded]: "UNAVAILABLE",
};

/** Failures after which the same request, with the same idempotency key, may be sent again. */
const RETRYABLE = new Set<Code>([Code.Unavailable, Code.DeadlineExceeded]);

/**
 * Every call of this client fails with this error. `reason` is the spec's code
 * (`err.reason === "INSUFFICIENT_BALANCE"`), `details` its ErrorInfo metadata with bigint
 * amounts (`err.details.available_cents`), `code` the gRPC/Connect status code.
 */
export class AccountBalanceError extends Error {
  override readonly name = "AccountBalanceError";
  /** The gRPC / Connect status code. */
  readonly code: Code;
  /** The spec's reason; derived from `code` when the server sent no ErrorInfo. */
  readonly reason: Reason;
  /** The reason exactly as received (a newer server may send one this client does not know). */
  readonly rawReason: string | undefined;
  readonly details: ErrorDetails;
  /** The ErrorInfo metadata as received (all strings). */
  readonly metadata: Readonly<Record<string, string>>;
  /** True for transient failures (UNAVAILABLE, DEADLINE_EXCEEDED): safe to retry with the same idempotency key. */
  readonly retryable: boolean;
  override readonly cause: ConnectError;

  constructor(cause: ConnectError) {
    super(cause.rawMessage);
    this.cause = cause;
    this.code = cause.code;
    const info = cause.findDetails(ErrorInfoSchema).find((i) => i.domain === ERROR_DOMAIN) ?? cause.findDetails(ErrorInfoSchema)[0];
    this.rawReason = info?.reason;
    this.reason = info && isReason(info.reason) ? info.reason : (REASON_OF_CODE[cause.code] ?? "INTERNAL");
    this.metadata = { ...(info?.metadata ?? {}) };
    this.details = detailsOf(this.metadata);
    this.retryable = RETRYABLE.has(cause.code);
  }

  /** Converts anything a transport may throw; an AccountBalanceError is returned as is. */
  static from(err: unknown): AccountBalanceError {
    if (err instanceof AccountBalanceError) return err;
    return new AccountBalanceError(ConnectError.from(err));
  }
}

/** `err` is an AccountBalanceError (with that reason, when one is given). */
export function isAccountBalanceError(err: unknown, reason?: Reason): err is AccountBalanceError {
  return err instanceof AccountBalanceError && (reason === undefined || err.reason === reason);
}

function detailsOf(metadata: Record<string, string>): ErrorDetails {
  const out: Record<string, string | bigint> = {};
  for (const [key, value] of Object.entries(metadata)) {
    out[key] = key.endsWith("_cents") && /^-?\d+$/.test(value) ? BigInt(value) : value;
  }
  return out;
}
