import { cors as connectCors } from "@connectrpc/connect";
import type { NodeRequest, NodeResponse } from "./listen.js";

/**
 * CORS for browser pages on other origins (CORS_ALLOWED_ORIGINS), on every route: REST,
 * Connect and gRPC-Web. Credentials travel as headers (X-Session-ID, Authorization), never
 * as cookies: no Access-Control-Allow-Credentials is ever sent, so a page elsewhere cannot
 * act with a user's session cookie, and the REST content-type rule still refuses the
 * cross-site requests a browser sends without asking.
 */
export interface CorsOptions {
  /** Exact origins ("https://app.example.com"), or "*" for any. Empty: no CORS headers at all. */
  allowedOrigins: readonly string[];
}

const METHODS = "GET, POST, PUT, DELETE";
// connect's own (content type, protocol version, timeouts, gRPC-Web) plus the API's credentials
// and keys. Never X-User-ID / X-User-Type: with ACCOUNT_BALANCE_REQUIRE_AUTH=false they are a
// gateway's word for who calls, and a page must not be able to speak it.
const REQUEST_HEADERS = [...connectCors.allowedHeaders, "Authorization", "X-Session-ID", "Idempotency-Key"].join(", ");
const RESPONSE_HEADERS = connectCors.exposedHeaders.join(", ");
const PREFLIGHT_MAX_AGE_SECONDS = "7200";

/**
 * Returns a handler that answers a preflight itself (true) or, for a request from an allowed
 * origin, adds the headers that let its page read the answer and leaves the rest to the next
 * handler (false).
 */
export function createCors(opts: CorsOptions): (req: NodeRequest, res: NodeResponse) => boolean {
  const any = opts.allowedOrigins.includes("*");
  const origins = new Set(opts.allowedOrigins);
  if (!any && origins.size === 0) return () => false;
  return (req, res) => {
    // Every answer depends on the Origin header, its absence included: a shared cache must
    // not hand one origin's (or a same-origin) answer to another.
    res.setHeader("vary", "Origin");
    const origin = req.headers.origin;
    if (typeof origin !== "string") return false;
    const allowed = any || origins.has(origin);
    if (req.method === "OPTIONS" && req.headers["access-control-request-method"] !== undefined) {
      // A refused preflight is an answer without the allow headers: the browser stops there.
      res.writeHead(
        204,
        allowed
          ? {
              "access-control-allow-origin": origin,
              "access-control-allow-methods": METHODS,
              "access-control-allow-headers": REQUEST_HEADERS,
              "access-control-max-age": PREFLIGHT_MAX_AGE_SECONDS,
            }
          : {},
      );
      res.end();
      return true;
    }
    if (allowed) {
      res.setHeader("access-control-allow-origin", origin);
      res.setHeader("access-control-expose-headers", RESPONSE_HEADERS);
    }
    return false;
  };
}
