import { ConnectError, type Interceptor } from "@connectrpc/connect";
import { LedgerError } from "@account-balance/ledger";
import { fromLedgerError, refusal } from "../errors.js";
import type { Logger } from "../log.js";

/**
 * The outermost interceptor: every error leaves as a ConnectError with a reason. Anything
 * unexpected is logged here (with the method, never the request) and answered with a
 * generic INTERNAL, so no SQL, stack or driver text reaches a caller.
 */
export function createErrorsInterceptor(log: Logger): Interceptor {
  return (next) => async (req) => {
    try {
      return await next(req);
    } catch (err) {
      if (err instanceof LedgerError) {
        if (err.reason === "INTERNAL" || err.reason === "UNAVAILABLE") {
          // An outage (UNAVAILABLE) is expected to pass and clients retry it; a bug is not.
          (err.reason === "INTERNAL" ? log.error : log.warn)("ledger failure", {
            method: `${req.service.typeName}/${req.method.name}`,
            reason: err.reason,
            cause: describe(err.cause),
          });
        }
        throw fromLedgerError(err);
      }
      if (err instanceof ConnectError) throw err;
      log.error("unexpected error", { method: `${req.service.typeName}/${req.method.name}`, error: describe(err) });
      throw refusal("INTERNAL", "internal error");
    }
  };
}

/** Name and driver code only: a driver's message can quote SQL and the values in it. */
function describe(err: unknown): string {
  if (!(err instanceof Error)) return typeof err;
  const code = (err as { code?: unknown }).code;
  return typeof code === "string" ? `${err.name} (${code})` : err.name;
}
