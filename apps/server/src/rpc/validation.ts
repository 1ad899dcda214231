import { createValidator } from "@bufbuild/protovalidate";
import { ConnectError, type Interceptor } from "@connectrpc/connect";
import { clip, MAX_DETAIL_CHARS, refusal } from "../errors.js";
import { contractRegexMatch } from "./patterns.js";
import { invalidTimestamps } from "./timestamps.js";

/**
 * Applies the contract's protovalidate rules to every request message, on every protocol,
 * after the Timestamp type's own range (which protovalidate does not check). It sits after
 * the auth interceptor: the spec checks credentials and roles before input.
 */
export function createValidationInterceptor(): Interceptor {
  const validator = createValidator({ regexMatch: contractRegexMatch });
  return (next) => async (req) => {
    if (!req.stream) {
      const timestamps = invalidTimestamps(req.method.input, req.message);
      if (timestamps.length > 0) {
        throw refusal(
          "VALIDATION_FAILED",
          `invalid request: ${timestamps.join(", ")}: a timestamp must lie within 0001-01-01 … 9999-12-31 UTC, nanos 0 … 999999999`,
          { field: timestamps[0]! },
        );
      }
      const result = validator.validate(req.method.input, req.message);
      if (result.kind === "invalid") {
        // Each violation names its field path, which quotes map keys as sent: kept short so
        // that every violation still shows within the refusal's bounded message.
        const fields = result.violations.map((v) => clip(v.toString(), MAX_DETAIL_CHARS));
        throw refusal("VALIDATION_FAILED", `invalid request: ${fields.join("; ")}`);
      }
      if (result.kind === "error") {
        throw refusal("VALIDATION_FAILED", "invalid request");
      }
    }
    // The last check before the implementation: a call whose deadline passed during the ones
    // above (a session looked up in the database, say) starts no work it could not report.
    if (req.signal.aborted) throw ConnectError.from(req.signal.reason);
    return next(req);
  };
}
