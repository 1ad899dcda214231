import { ConnectError } from "@connectrpc/connect";
import { LRUCache } from "lru-cache";
import { refusal } from "../errors.js";
import { ROLE_SHAPE, USER_ID_SHAPE } from "./caller.js";
import { redact, type AuthLog, type SessionProvider, type SessionUser } from "./session.js";

export interface FlowlessOptions {
  /** FLOWLESS_API_URL, e.g. https://auth.example.com (a trailing slash is fine). */
  apiUrl: string;
  /** BRIDGE_VALIDATION_SECRET, sent as X-Bridge-Secret. */
  bridgeSecret: string;
  /** SESSION_CACHE_TTL_SECONDS: how long a successful validation is reused; 0 disables the cache. */
  cacheTtlSeconds: number;
  /** Most sessions kept in the cache. */
  cacheMax: number;
  /** Per attempt. */
  timeoutMs?: number;
  /** Retries after the first attempt, on network errors, timeouts and 5xx only. */
  retries?: number;
  /** First backoff delay; doubles per retry, with jitter. */
  retryBaseMs?: number;
  fetch?: typeof globalThis.fetch;
  log?: AuthLog;
  now?: () => number;
}

/** The parts of Flowless' bridge reply this service reads. */
interface BridgeReply {
  success?: unknown;
  error?: unknown;
  user?: { id?: unknown; email?: unknown; name?: unknown; user_type?: unknown };
  session?: { userId?: unknown; expiresAt?: unknown };
  expires_at?: unknown;
}

/** Worth another attempt: the service may answer next time. */
class Transient extends Error {}

/** A success reply that does not say clearly whose session it is, or until when. */
class Malformed extends Error {}

const SOURCE = "account-balance";

/** An expiry: absent (undefined), or a time, or Malformed when present but unreadable. */
function parseTime(value: unknown, field: string): number | undefined {
  if (value === undefined || value === null) return undefined;
  const ms = typeof value === "string" || typeof value === "number" ? new Date(value).getTime() : NaN;
  if (!Number.isFinite(ms)) throw new Malformed(`${field} is not a time`);
  return ms;
}

function optionalString(value: unknown): string | undefined {
  return typeof value === "string" && value !== "" ? value : undefined;
}

/**
 * The user of a successful reply, or null when the reply does not vouch for a live session.
 * A success it cannot read in full (spec section 5: `user{id, user_type}`, an expiry) logs
 * nobody in: Malformed.
 */
function userOf(reply: BridgeReply, now: number): SessionUser | null {
  if (reply.success !== true) return null;
  if (typeof reply.user !== "object" || reply.user === null) throw new Malformed("no user");
  const id = reply.user.id;
  const userId = typeof id === "number" && Number.isSafeInteger(id) ? String(id) : optionalString(id);
  // The contract's user_id shape: a balance of user "a b" could never be reached by the admin routes.
  if (userId === undefined || !USER_ID_SHAPE.test(userId)) throw new Malformed("user.id is missing or not a user id");
  const sessionUser = reply.session?.userId;
  if (sessionUser !== undefined && String(sessionUser) !== userId) throw new Malformed("session.userId is not user.id");
  const userType = optionalString(reply.user.user_type);
  if (userType === undefined || !ROLE_SHAPE.test(userType)) throw new Malformed("user.user_type is missing or not a role");
  // Both expiries may be given; the earlier one is the one that binds. Without one, nothing
  // says how long the session lives, and the cache would keep it for its whole TTL.
  const expiries = [parseTime(reply.session?.expiresAt, "session.expiresAt"), parseTime(reply.expires_at, "expires_at")].filter(
    (t): t is number => t !== undefined,
  );
  if (expiries.length === 0) throw new Malformed("no expiry");
  const expiresAt = Math.min(...expiries);
  if (expiresAt <= now) return null;
  const user: SessionUser = { userId, userType, expiresAt: new Date(expiresAt) };
  const email = optionalString(reply.user.email);
  const name = optionalString(reply.user.name);
  if (email !== undefined) user.email = email;
  if (name !== undefined) user.name = name;
  return user;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Validates sessions against Flowless (`POST /auth/bridge/validate`, spec section 5), with an LRU
 * cache of successful validations and one shared in-flight request per session id.
 */
export function createFlowlessProvider(opts: FlowlessOptions): SessionProvider {
  const fetchFn = opts.fetch ?? globalThis.fetch;
  const timeoutMs = opts.timeoutMs ?? 5000;
  const retries = Math.max(0, opts.retries ?? 3);
  const retryBaseMs = opts.retryBaseMs ?? 100;
  const now = opts.now ?? Date.now;
  const log = opts.log;
  const base = opts.apiUrl.replace(/\/+$/, "");
  const cacheTtlMs = Math.floor(opts.cacheTtlSeconds * 1000);
  const cache =
    cacheTtlMs > 0 ? new LRUCache<string, SessionUser>({ max: Math.max(1, opts.cacheMax), ttl: cacheTtlMs }) : null;
  const inFlight = new Map<string, Promise<SessionUser | null>>();

  /** One HTTP exchange: a user, null for "invalid", or Transient for "ask again". */
  async function attempt(sessionId: string): Promise<SessionUser | null> {
    let res: Response;
    let reply: unknown;
    try {
      res = await fetchFn(`${base}/auth/bridge/validate?session_id=${encodeURIComponent(sessionId)}`, {
        method: "POST",
        headers: { "X-Bridge-Secret": opts.bridgeSecret, "Content-Type": "application/json" },
        body: JSON.stringify({ timestamp: now(), source: SOURCE }),
        signal: AbortSignal.timeout(timeoutMs),
        // Never followed: the secret goes to FLOWLESS_API_URL only, and only its own answer counts.
        redirect: "manual",
      });
      if (res.status >= 300 && res.status < 400) {
        await res.body?.cancel().catch(() => undefined);
        log?.warn("flowless: redirect not followed; check FLOWLESS_API_URL", { status: res.status, session: redact(sessionId) });
        throw refusal("UNAVAILABLE", "session service unavailable");
      }
      if (res.status === 401 || res.status === 403) {
        await res.body?.cancel().catch(() => undefined);
        return null;
      }
      if (res.status === 429) {
        // Flowless asks us to slow down: retrying at once would make that worse.
        await res.body?.cancel().catch(() => undefined);
        throw refusal("UNAVAILABLE", "session service unavailable");
      }
      if (res.status >= 500) {
        await res.body?.cancel().catch(() => undefined);
        throw new Transient(`HTTP ${res.status}`);
      }
      if (res.status !== 200) {
        // Another 4xx: Flowless refuses this id (or us); either way it does not vouch for it.
        await res.body?.cancel().catch(() => undefined);
        log?.warn("flowless: unexpected status, session treated as invalid", {
          status: res.status,
          session: redact(sessionId),
        });
        return null;
      }
      // A timeout or a lost connection while the body arrives is a network fault (retried); a
      // body that arrived whole but is not JSON is a garbled reply (not).
      const text = await res.text();
      try {
        reply = JSON.parse(text);
      } catch {
        reply = undefined;
      }
    } catch (err) {
      if (err instanceof Transient || err instanceof ConnectError) throw err;
      // A network error or a timeout (AbortSignal.timeout): worth a retry.
      const name = err instanceof Error ? err.name : "Error";
      throw new Transient(name === "TimeoutError" ? "timeout" : name);
    }
    // A garbled success is not a network fault: asking again would not make it a session.
    try {
      if (typeof reply !== "object" || reply === null) throw new Malformed("not a JSON object");
      return userOf(reply as BridgeReply, now());
    } catch (err) {
      if (!(err instanceof Malformed)) throw err;
      log?.warn("flowless: unreadable reply, session not accepted", { problem: err.message, session: redact(sessionId) });
      throw refusal("UNAVAILABLE", "session service unavailable");
    }
  }

  async function validateUpstream(sessionId: string): Promise<SessionUser | null> {
    let lastProblem = "";
    for (let attemptNo = 0; attemptNo <= retries; attemptNo++) {
      if (attemptNo > 0) {
        // Exponential backoff with jitter: half fixed, half random, so instances do not retry in step.
        const ceiling = retryBaseMs * 2 ** (attemptNo - 1);
        await sleep(ceiling / 2 + Math.random() * (ceiling / 2));
      }
      try {
        return await attempt(sessionId);
      } catch (err) {
        if (!(err instanceof Transient)) throw err;
        lastProblem = err.message;
      }
    }
    log?.warn("flowless: session service unavailable", {
      attempts: retries + 1,
      problem: lastProblem,
      session: redact(sessionId),
    });
    throw refusal("UNAVAILABLE", "session service unavailable");
  }

  function cached(sessionId: string): SessionUser | undefined {
    const user = cache?.get(sessionId);
    if (user === undefined) return undefined;
    // The TTL already stops at the expiry; this guards against clock differences between the two.
    if (user.expiresAt !== undefined && user.expiresAt.getTime() <= now()) {
      cache?.delete(sessionId);
      return undefined;
    }
    return user;
  }

  function remember(sessionId: string, user: SessionUser): void {
    if (cache === null) return;
    const untilExpiry = user.expiresAt !== undefined ? user.expiresAt.getTime() - now() : Infinity;
    const ttl = Math.floor(Math.min(cacheTtlMs, untilExpiry));
    if (ttl >= 1) cache.set(sessionId, user, { ttl });
  }

  return {
    async validate(sessionId) {
      const hit = cached(sessionId);
      if (hit !== undefined) return { ...hit };
      let pending = inFlight.get(sessionId);
      if (pending === undefined) {
        pending = validateUpstream(sessionId)
          .then((user) => {
            if (user !== null) remember(sessionId, user);
            return user;
          })
          .finally(() => inFlight.delete(sessionId));
        inFlight.set(sessionId, pending);
      }
      const user = await pending;
      return user === null ? null : { ...user };
    },
  };
}
