import { describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { AccountBalanceError } from "./errors.js";

// A failure without the service's ErrorInfo gets its reason from the status code alone.
describe("AccountBalanceError without an ErrorInfo", () => {
  it.each([
    [Code.ResourceExhausted, "VALIDATION_FAILED"], // a message over a size limit, not a rate limit
    [Code.Unimplemented, "INTERNAL"], // a path nothing serves, not a disabled module
    [Code.Unavailable, "UNAVAILABLE"],
    [Code.NotFound, "NOT_FOUND"],
  ] as const)("code %s is reason %s", (code, reason) => {
    const err = AccountBalanceError.from(new ConnectError("from a proxy", code));
    expect(err.reason).toBe(reason);
    expect(err.rawReason).toBeUndefined();
    expect(err.retryable).toBe(code === Code.Unavailable);
  });
});
