import { ConnectError, Code } from "@connectrpc/connect";
import type { RestErrorContext, RestResponse, RestSuccessContext } from "@account-balance/connect-rest";
import type { JsonValue } from "@bufbuild/protobuf";
import { reasonOf } from "./errors.js";

/**
 * The product's REST envelope (spec section 4): `{success: true, data, meta?}` on success,
 * `{success: false, error, code, details}` on failure. The gateway itself is generic;
 * these two functions are all it knows of this API.
 */
export function restSuccess(json: JsonValue, ctx: RestSuccessContext): RestResponse {
  const fields = json !== null && typeof json === "object" && !Array.isArray(json) ? json : { data: json };
  return { status: ctx.method.name === "CreateBalance" ? 201 : 200, body: { success: true, ...fields } };
}

export function restError(err: ConnectError, ctx: RestErrorContext): RestResponse {
  return { status: ctx.status, body: restErrorBody(err, GATEWAY_REASON[ctx.status]) };
}

// The gateway's own refusals carry no ErrorInfo, and their Connect codes name the wrong thing:
// an oversized body is ResourceExhausted (read as TOO_MANY_REQUESTS, which invites a retry of
// the same body) and a wrong HTTP method is Unimplemented (no reason at all, so INTERNAL).
const GATEWAY_REASON: Partial<Record<number, string>> = {
  405: "NOT_FOUND",
  413: "VALIDATION_FAILED",
};

const FALLBACK_REASON: Partial<Record<Code, string>> = {
  [Code.InvalidArgument]: "VALIDATION_FAILED",
  [Code.Unauthenticated]: "UNAUTHENTICATED",
  [Code.PermissionDenied]: "FORBIDDEN",
  [Code.NotFound]: "NOT_FOUND",
  [Code.ResourceExhausted]: "TOO_MANY_REQUESTS",
  [Code.Unavailable]: "UNAVAILABLE",
  [Code.DeadlineExceeded]: "UNAVAILABLE",
};

export function restErrorBody(err: ConnectError, gatewayReason?: string): JsonValue {
  const info = reasonOf(err);
  const code = info?.reason ?? gatewayReason ?? FALLBACK_REASON[err.code] ?? "INTERNAL";
  return { success: false, error: err.rawMessage, code, details: info ? restDetails(info.metadata) : null };
}

/** ErrorInfo metadata is strings; amounts (`*_cents`) go back to JSON numbers for REST callers. */
function restDetails(metadata: Record<string, string>): { [k: string]: JsonValue } | null {
  const entries = Object.entries(metadata);
  if (entries.length === 0) return null;
  return Object.fromEntries(entries.map(([k, v]) => [k, k.endsWith("_cents") && /^-?\d{1,16}$/.test(v) ? Number(v) : v]));
}
