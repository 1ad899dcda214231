import { LedgerError } from "./errors.js";
import { inFork, runSql, type LedgerEntityManager, type LedgerOrm } from "./orm.js";
import { invalid, requireText } from "./validate.js";

/**
 * An idempotency key as the caller gives it. `scope` names the caller (keys of different
 * callers never meet); `fingerprint` is a digest of the request made by the transport, so
 * that the same key with a different request can be told apart.
 */
export interface IdempotencyKey {
  scope: string;
  key: string;
  fingerprint: string;
}

/** How the result of an operation is stored with its key and rebuilt on a replay. */
export interface IdempotencyCodec<T> {
  encode(value: T): unknown;
  decode(stored: unknown, em: LedgerEntityManager): T;
}

export interface Idempotent<T> {
  value: T;
  /** True when `value` is the stored result of an earlier call with the same key. */
  replayed: boolean;
}

export interface Idempotency {
  /**
   * Runs `fn` at most once per key, inside the caller's database transaction `em`:
   * - a new (or expired) key is claimed by inserting its row in that transaction; `fn` runs
   *   and its result is stored with the key, committed or rolled back together with the work.
   *   A refusal thrown by `fn` rolls the claim back too: refusals are not stored, so the
   *   key is free again and a retry runs afresh.
   * - a concurrent call with the same key blocks on the uncommitted row until the first
   *   transaction ends, then replays its result (or claims the key if it rolled back).
   * - a stored key with the same operation and fingerprint returns its result (replayed).
   * - a stored key with another operation or fingerprint: IDEMPOTENCY_KEY_REUSED.
   * Without a key, `fn` simply runs.
   */
  run<T>(
    em: LedgerEntityManager,
    key: IdempotencyKey | undefined,
    operation: string,
    codec: IdempotencyCodec<T>,
    fn: () => Promise<T>,
  ): Promise<Idempotent<T>>;
  /** Deletes keys past their expiry; returns how many. */
  purgeExpired(): Promise<number>;
  /** How long a key is kept, in seconds. */
  readonly ttlSeconds: number;
}

export const DEFAULT_IDEMPOTENCY_TTL_SECONDS = 24 * 60 * 60;
const MAX_KEY_LENGTH = 255;

/** Checks a key before any work starts; undefined means "no key". */
export function requireIdempotencyKey(value: IdempotencyKey | undefined): IdempotencyKey | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "object" || value === null) throw invalid("idempotency key is malformed", "idempotency_key");
  const { scope, key, fingerprint } = value;
  if (typeof key !== "string" || key.length < 1 || key.length > MAX_KEY_LENGTH) {
    throw invalid(`idempotency key must be 1 to ${MAX_KEY_LENGTH} characters`, "idempotency_key");
  }
  if (typeof scope !== "string" || scope === "") throw invalid("idempotency scope is required", "idempotency_key");
  if (typeof fingerprint !== "string" || fingerprint === "") {
    throw invalid("idempotency fingerprint is required", "idempotency_key");
  }
  for (const part of [scope, key, fingerprint]) requireText(part, "idempotency_key");
  return { scope, key, fingerprint };
}

interface StoredKey {
  fingerprint: string;
  operation: string;
  status: string;
  response: unknown;
}

/** Spec section 6: keys are kept at least 24 h. */
export function checkIdempotencyTtl(ttlSeconds: number | undefined): number {
  const ttl = ttlSeconds ?? DEFAULT_IDEMPOTENCY_TTL_SECONDS;
  if (!Number.isSafeInteger(ttl) || ttl < DEFAULT_IDEMPOTENCY_TTL_SECONDS) {
    throw new LedgerError("VALIDATION_FAILED", "the idempotency key lifetime must be at least 86400 seconds");
  }
  return ttl;
}

export function createIdempotency(orm: LedgerOrm, opts: { ttlSeconds?: number } = {}): Idempotency {
  const ttlSeconds = checkIdempotencyTtl(opts.ttlSeconds);

  async function run<T>(
    em: LedgerEntityManager,
    key: IdempotencyKey | undefined,
    operation: string,
    codec: IdempotencyCodec<T>,
    fn: () => Promise<T>,
  ): Promise<Idempotent<T>> {
    if (!key) return { value: await fn(), replayed: false };

    // ON CONFLICT waits for a concurrent uncommitted claim of the same key, and locks the
    // committed row it then finds. An expired row is taken over as if it were absent.
    const claimed = await runSql(
      em,
      `insert into idempotency_keys (scope, key, fingerprint, operation, status, created_at, expires_at)
       values (?, ?, ?, ?, 'in_flight', now(), now() + make_interval(secs => ?))
       on conflict (scope, key) do update
          set fingerprint = excluded.fingerprint, operation = excluded.operation, status = 'in_flight',
              response = null, created_at = excluded.created_at, expires_at = excluded.expires_at
        where idempotency_keys.expires_at <= now()
       returning 1 as claimed`,
      [key.scope, key.key, key.fingerprint, operation, ttlSeconds],
    );

    if (claimed.length === 0) {
      const [stored] = (await runSql(
        em,
        `select fingerprint, operation, status, response from idempotency_keys where scope = ? and key = ?`,
        [key.scope, key.key],
      )) as StoredKey[];
      if (!stored) throw new LedgerError("INTERNAL", "internal ledger error");
      if (stored.fingerprint !== key.fingerprint || stored.operation !== operation) {
        throw new LedgerError("IDEMPOTENCY_KEY_REUSED", "this idempotency key was already used for a different request");
      }
      if (stored.status !== "done") {
        // Not reachable while claims share the work's transaction; kept as a safe answer.
        throw new LedgerError("IDEMPOTENCY_KEY_REUSED", "a request with this idempotency key is still running", {
          state: "in_flight",
        });
      }
      return { value: codec.decode(stored.response, em), replayed: true };
    }

    const value = await fn();
    await runSql(
      em,
      `update idempotency_keys set status = 'done', response = ?::jsonb where scope = ? and key = ?`,
      [JSON.stringify(codec.encode(value)), key.scope, key.key],
    );
    return { value, replayed: false };
  }

  async function purgeExpired(): Promise<number> {
    return inFork(orm, async (em) => {
      const [res] = await runSql<{ n: number }>(
        em,
        `with d as (delete from idempotency_keys where expires_at <= now() returning 1) select count(*)::int as n from d`,
      );
      return res?.n ?? 0;
    });
  }

  return { run, purgeExpired, ttlSeconds };
}
