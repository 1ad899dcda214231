/**
 * Why the ledger refuses an operation. The names are the spec's reason codes (section 4);
 * transports map them to their own status codes, the ledger knows none of them.
 */
export type Reason =
  | "VALIDATION_FAILED"
  | "UNAUTHENTICATED"
  | "FORBIDDEN"
  | "NOT_FOUND"
  | "MODULE_DISABLED"
  | "INSUFFICIENT_BALANCE"
  | "BALANCE_NOT_ACTIVE"
  | "BALANCE_EXPIRED"
  | "AMOUNT_OUT_OF_RANGE"
  | "IDEMPOTENCY_KEY_REUSED"
  | "DUPLICATE_BALANCE"
  | "BALANCE_NOT_EMPTY"
  | "TOO_MANY_REQUESTS"
  | "UNAVAILABLE"
  | "INTERNAL";

/** Details are flat string values so they fit google.rpc.ErrorInfo.metadata unchanged. */
export class LedgerError extends Error {
  constructor(
    readonly reason: Reason,
    message: string,
    readonly details: Record<string, string> = {},
  ) {
    super(message);
    this.name = "LedgerError";
  }
}
