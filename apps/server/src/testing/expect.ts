import { expect } from "vitest";
import { Code } from "@connectrpc/connect";
import type { Failure, Outcome, Success } from "./protocols.js";

/** Spec section 4: each reason's HTTP status and Connect/gRPC code (written out here, not imported from the server). */
export const REASONS = {
  VALIDATION_FAILED: { http: 400, code: Code.InvalidArgument },
  UNAUTHENTICATED: { http: 401, code: Code.Unauthenticated },
  FORBIDDEN: { http: 403, code: Code.PermissionDenied },
  NOT_FOUND: { http: 404, code: Code.NotFound },
  MODULE_DISABLED: { http: 404, code: Code.Unimplemented },
  DUPLICATE_BALANCE: { http: 409, code: Code.AlreadyExists },
  IDEMPOTENCY_KEY_REUSED: { http: 409, code: Code.AlreadyExists },
  BALANCE_NOT_EMPTY: { http: 400, code: Code.FailedPrecondition },
  BALANCE_NOT_ACTIVE: { http: 400, code: Code.FailedPrecondition },
  BALANCE_EXPIRED: { http: 400, code: Code.FailedPrecondition },
  INSUFFICIENT_BALANCE: { http: 400, code: Code.FailedPrecondition },
  AMOUNT_OUT_OF_RANGE: { http: 400, code: Code.InvalidArgument },
} as const;
export type Reason = keyof typeof REASONS;

function describe(o: Outcome): string {
  return JSON.stringify(o, (_k, v) => (typeof v === "bigint" ? v.toString() : v));
}

/** The call succeeded; returns it typed (and prints the failure when it did not). */
export function expectOk(o: Outcome): Success {
  if (!o.ok) expect.fail(`${o.protocol}: expected success, got ${describe(o)}`);
  return o;
}

/**
 * The call was refused with `reason`: on REST the status and the envelope
 * `{success: false, error, code, details}`; on Connect and gRPC the status code and a
 * google.rpc.ErrorInfo with that reason. gRPC messages must be readable (no %3A / %2C left by
 * grpc-js' decodeURI).
 */
export function expectRefused(o: Outcome, reason: Reason): Failure {
  if (o.ok) expect.fail(`${o.protocol}: expected ${reason}, got success ${describe(o)}`);
  const want = REASONS[reason];
  if (o.protocol === "rest") {
    expect(o.status, describe(o)).toBe(want.http);
    expect(o.body, describe(o)).toMatchObject({ success: false, code: reason });
    expect(typeof o.body.error).toBe("string");
    expect(o.body.error.length).toBeGreaterThan(0);
    expect(Object.keys(o.body).sort()).toEqual(["code", "details", "error", "success"]);
  } else {
    expect({ code: o.code, reason: o.reason }, describe(o)).toEqual({ code: want.code, reason });
    expect(o.errorInfo?.[0]?.domain).toBe("account-balance");
    expect(o.message.length).toBeGreaterThan(0);
    if (o.protocol === "grpc") expect(o.message).not.toMatch(/%[0-9A-F]{2}/);
  }
  assertNoInternals(o.message);
  return o;
}

/** No SQL, stack trace or driver text in a message meant for a caller. */
export function assertNoInternals(message: string): void {
  expect(message).not.toMatch(/\bselect\b.*\bfrom\b|\binsert into\b|\bupdate\b.*\bset\b|violates|constraint|at .*\.js:\d+|node_modules|postgres/i);
}
