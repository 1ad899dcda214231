import { ConnectError, type Interceptor } from "@connectrpc/connect";
import { refusal } from "../errors.js";
import { callerKey, ROLE_SHAPE, USER_ID_SHAPE, type Caller } from "./caller.js";
import { createServiceTokens } from "./service-tokens.js";
import { findSessionId, bearerToken, type CredentialSource } from "./session-id.js";
import { redact, type AuthLog, type SessionProvider } from "./session.js";

export interface AuthOptions {
  /** ACCOUNT_BALANCE_ENABLED. */
  enabled: boolean;
  /** ACCOUNT_BALANCE_REQUIRE_AUTH; false trusts X-User-ID when no credential is sent. */
  requireAuth: boolean;
  /** ACCOUNT_BALANCE_ALLOWED_ROLES; empty allows every role. Service callers are always allowed. */
  allowedRoles: readonly string[];
  /** ACCOUNT_BALANCE_ADMIN_ROLES. */
  adminRoles: readonly string[];
  /** SERVICE_TOKENS. */
  serviceTokens: readonly string[];
  provider: SessionProvider;
  /** Services (typeName) whose every method needs an admin role or a service token. */
  adminServices: readonly string[];
  /** Services (typeName) this module guards; anything else (health, reflection) passes untouched. */
  guardedServices: readonly string[];
  log?: AuthLog;
}

/** Longest session id passed on to a provider; anything longer is not a session id we issue. */
const MAX_SESSION_ID_LENGTH = 1024;
/** Session ids are printable ASCII without spaces. */
const SESSION_ID_SHAPE = /^[\x21-\x7e]+$/;

function lowerSet(values: readonly string[]): Set<string> {
  return new Set(values.map((v) => v.trim().toLowerCase()).filter((v) => v !== ""));
}

function unauthenticated(message: string): ConnectError {
  return refusal("UNAUTHENTICATED", message);
}

/**
 * Establishes who is calling an account-balance RPC and whether they may, in the spec's order
 * (section 4): module enabled → credentials → role allowed → admin service. The first refusal wins;
 * on success the caller is put in the context under `callerKey` for the handlers.
 */
export function createAuthInterceptor(opts: AuthOptions): Interceptor {
  const guarded = new Set(opts.guardedServices);
  const adminServices = new Set(opts.adminServices);
  const allowedRoles = lowerSet(opts.allowedRoles);
  const adminRoles = lowerSet(opts.adminRoles);
  const serviceTokens = createServiceTokens(opts.serviceTokens);

  function userCaller(userId: string, role: string): Caller {
    return { kind: "user", userId, role, isAdmin: adminRoles.has(role.toLowerCase()) };
  }

  async function authenticate(req: CredentialSource): Promise<Caller> {
    const found = findSessionId(req);
    // The spec's order puts X-Session-ID before Authorization: a gateway that calls with a
    // service token and forwards its user's X-Session-ID acts as that user, never as the
    // service. A service token is the Bearer credential, ahead of query and cookie.
    if (found?.from !== "header") {
      const service = serviceTokens.match(bearerToken(req.header));
      if (service !== undefined) return service;
    }
    if (found !== undefined) {
      // A credential that is sent is always checked: a bad one never falls back to the trusted header.
      const { sessionId } = found;
      if (sessionId.length > MAX_SESSION_ID_LENGTH || !SESSION_ID_SHAPE.test(sessionId)) {
        throw unauthenticated("invalid or expired session");
      }
      let user;
      try {
        user = await opts.provider.validate(sessionId);
      } catch (err) {
        if (err instanceof ConnectError) throw err;
        opts.log?.warn("auth: session provider failed", {
          session: redact(sessionId),
          error: err instanceof Error ? err.name : typeof err,
        });
        throw refusal("UNAVAILABLE", "session service unavailable");
      }
      if (user === null) throw unauthenticated("invalid or expired session");
      return userCaller(user.userId, user.userType);
    }

    if (!opts.requireAuth) {
      const userId = req.header.get("x-user-id");
      if (userId) {
        const role = req.header.get("x-user-type") || "customer";
        // A balance created for "a b" could never be addressed by the admin routes again.
        // No comma either: two headers reach us joined by one ("a, b", or "a," when the
        // second was empty, as fetch's Headers trims the value).
        if (!USER_ID_SHAPE.test(userId) || !ROLE_SHAPE.test(role) || `${userId}${role}`.includes(",")) {
          throw unauthenticated("X-User-ID must be one header of 1 to 128 printable ASCII characters without spaces or commas, X-User-Type 1 to 64");
        }
        return userCaller(userId, role);
      }
    }
    throw unauthenticated("authentication required");
  }

  function authorize(caller: Caller, serviceName: string): void {
    if (caller.kind === "service") return;
    if (allowedRoles.size > 0 && !allowedRoles.has(caller.role.toLowerCase())) {
      throw refusal("FORBIDDEN", "this role may not use account balances", { role: caller.role });
    }
    if (adminServices.has(serviceName) && !caller.isAdmin) {
      throw refusal("FORBIDDEN", "an admin role is required");
    }
  }

  return (next) => async (req) => {
    const serviceName = req.service.typeName;
    if (!guarded.has(serviceName)) return next(req);
    if (!opts.enabled) throw refusal("MODULE_DISABLED", "account balance module is disabled");
    const caller = await authenticate(req);
    authorize(caller, serviceName);
    req.contextValues.set(callerKey, caller);
    return next(req);
  };
}

/** What the operator should know at start about how callers are authenticated. */
export function logStartupWarnings(
  opts: Pick<AuthOptions, "requireAuth" | "serviceTokens">,
  log: AuthLog,
): void {
  if (!opts.requireAuth) {
    log.warn(
      "ACCOUNT_BALANCE_REQUIRE_AUTH=false: requests without credentials are accepted as the user named by the " +
        "X-User-ID header. Only run this behind a gateway that authenticates callers and sets that header.",
    );
  }
  const short = opts.serviceTokens.filter((t) => t.length < 32).length;
  if (short > 0) {
    log.warn("SERVICE_TOKENS: some tokens are shorter than 32 characters; use long random tokens", { count: short });
  }
}
