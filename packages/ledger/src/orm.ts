import { IsolationLevel, MikroORM, PostgreSqlDriver, type EntityManager, type Knex } from "@mikro-orm/postgresql";
import { Migrator } from "@mikro-orm/migrations";
import pg from "pg";
import { entities } from "./entities/index.js";
import { LedgerError } from "./errors.js";
import { migrationsList } from "./migrations/index.js";
import {
  CommitOutcomeUnknown,
  failureKind,
  isConnectionError,
  isRetryable,
  outcomeUnknown,
  refusedBeforeCommit,
  sqlState,
  toLedgerError,
  withCause,
} from "./db-errors.js";

export type LedgerOrm = MikroORM;
export type LedgerEntityManager = EntityManager;

/** Connections per ledger when the caller does not say (DB_POOL_MAX in the server). */
export const DEFAULT_POOL_MAX = 10;

export interface OrmOptions {
  databaseUrl: string;
  poolMax?: number;
  log?: (msg: string) => void;
}

export const MIGRATIONS_TABLE = "mikro_orm_migrations";
export const migrationNames: readonly string[] = migrationsList.map((m) => m.name);

/** The oldest PostgreSQL the ledger runs on: its writes settle unclear COMMITs with
 * `pg_current_xact_id` and `pg_xact_status`, both new in 13. */
export const MIN_SERVER_VERSION_NUM = 130_000;

/**
 * Refuses a server older than MIN_SERVER_VERSION_NUM, given its `server_version_num`, at
 * open: on 12 every write would fail, each as an internal error.
 */
export function checkServerVersion(versionNum: string): void {
  if (!(Number(versionNum) >= MIN_SERVER_VERSION_NUM)) {
    throw new LedgerError("UNAVAILABLE", `the ledger needs PostgreSQL 13 or later; the database reports server_version_num ${versionNum}`);
  }
}

export function initOrm(opts: OrmOptions): Promise<LedgerOrm> {
  const log = opts.log ?? (() => {});
  return MikroORM.init<PostgreSqlDriver, EntityManager>({
    driver: PostgreSqlDriver,
    clientUrl: opts.databaseUrl,
    entities,
    extensions: [Migrator],
    migrations: {
      tableName: MIGRATIONS_TABLE,
      migrationsList,
      transactional: true,
      allOrNothing: true,
      // `session_replication_role` needs a superuser; our migrations do not need it.
      disableForeignKeys: false,
      snapshot: false,
    },
    // The database is created by whoever provides the URL (or by the embedded starter).
    ensureDatabase: false,
    allowGlobalContext: false,
    forceUtcTimezone: true,
    debug: false,
    colors: false,
    logger: (msg) => log(msg),
    pool: { min: 0, max: opts.poolMax ?? DEFAULT_POOL_MAX, acquireTimeoutMillis: 10_000, idleTimeoutMillis: 30_000 },
    // Fail fast when the server is unreachable instead of hanging a request.
    driverOptions: { connection: { connectionTimeoutMillis: 5_000 } },
  });
}

/**
 * Runs one SQL statement in `em`'s transaction (if it has one) and returns its rows, `?`
 * placeholders sent as bind parameters. MikroORM's `em.execute` would inline each parameter
 * as an escaped literal instead: for a batch's JSON that was a fifth of everything the
 * server allocated under load (pg's escapeLiteral copies a string char by char), and
 * PostgreSQL then parsed the literals again. Failures leave as MikroORM's exceptions, as
 * from `em.execute`, so the callers' error mapping is unchanged.
 */
export async function runSql<T>(em: LedgerEntityManager, sql: string, params: readonly unknown[] = []): Promise<T[]> {
  const query = em.getConnection().getKnex().raw(sql, params as Knex.RawBinding[]);
  const trx = em.getTransactionContext<Knex.Transaction>();
  if (trx) query.transacting(trx);
  try {
    const result = (await query) as { rows: T[] };
    return result.rows;
  } catch (err) {
    throw em.getPlatform().getExceptionConverter().convertException(err as Error);
  }
}

/** One SQL statement with `?` placeholders and its bind parameters; resolves to its rows. */
export type Sql = <T>(sql: string, params?: readonly unknown[]) => Promise<T[]>;

/**
 * What a pooled transaction's body comes to: its value and, optionally, the transaction's
 * last statement, which goes to the database in one message with COMMIT. Its checks must be
 * in the SQL (a failed one raises, and the transaction rolls back): once it is sent, no
 * code of the body runs any more.
 */
export interface TransactionEnd<T> {
  value: T;
  last?: { sql: string; params: readonly unknown[] };
}

interface PooledClient {
  acquireConnection(): Promise<pg.Client>;
  releaseConnection(connection: pg.Client): Promise<void>;
  positionBindings(sql: string): string;
}

/** The pool under MikroORM's knex, for the paths that run `pg` connections directly. */
const poolOf = (orm: LedgerOrm): PooledClient => orm.em.getConnection().getKnex().client as PooledClient;

/** `log` (or nothing) such that a log that throws cannot change an outcome. */
export function safeLog(log: ((msg: string) => void) | undefined): (msg: string) => void {
  return (msg) => {
    try {
      log?.(msg);
    } catch {
      // ignored
    }
  };
}

const DOLLAR_TAG = "$v$";

/**
 * One parameter as a literal for the simple-query protocol, where several statements share
 * one message (and one round trip) but none can have bind parameters. A dollar-quoted string
 * is taken verbatim whatever `standard_conforming_strings` says, with no copy char by char
 * (pg's `escapeLiteral`, kept for the rare text that holds the tag); like a bind parameter
 * it is of unknown type until its context or cast decides.
 */
function literal(value: unknown): string {
  if (value === null || value === undefined) return "null";
  if (typeof value !== "string" && typeof value !== "number" && typeof value !== "bigint") {
    throw new TypeError(`no literal for a ${typeof value} parameter`);
  }
  const text = String(value);
  // The quote ends at the first tag after the opening one: that must be the closing tag we
  // append, also for a text that ends in part of it ("…$v").
  const quoted = text + DOLLAR_TAG;
  return quoted.indexOf(DOLLAR_TAG) === text.length ? DOLLAR_TAG + quoted : pg.escapeLiteral(text);
}

/**
 * `sql` with each placeholder replaced by its parameter as a literal (after a space, so that
 * no literal can run into the token before it). Placeholders as knex's `positionBindings`
 * reads them, so a text means the same here and as a later statement: every `?`, except one
 * escaped by an odd number of backslashes, which stands for a literal `?`. A count that does
 * not match throws before anything is sent.
 */
export function inlineParams(sql: string, params: readonly unknown[]): string {
  let n = 0;
  const out = sql.replace(/(\\*)\?/g, (_match, escapes: string) => {
    if (escapes.length % 2 === 1) return "?";
    if (n >= params.length) throw new TypeError(`more placeholders than the ${params.length} parameters`);
    return ` ${literal(params[n++])}`;
  });
  if (n !== params.length) throw new TypeError(`${n} placeholders for ${params.length} parameters`);
  return out;
}

/**
 * Runs `fn` in a transaction of its own on one connection of the ORM's pool, its statements
 * sent straight through `pg`. For the movement batch, which needs nothing of the ORM but its
 * pool: `em.fork().transactional()` forks an entity manager, enters an AsyncLocalStorage and
 * has knex build a transactor (a new function with ~100 properties defined on it) for every
 * batch; those ~20 KB live as long as the batch and were the largest single source of bytes
 * the server promoted to the old generation under load. Failures leave as MikroORM's
 * exceptions, as from runSql, but for `CommitOutcomeUnknown` (below).
 *
 * BEGIN goes in one message with the first statement, COMMIT with the body's `last`, both
 * as simple queries with their parameters inlined: a batch of one lock and one write takes
 * two round trips, not four. The round trip, not the statement, was most of BEGIN's and
 * COMMIT's time (on the bench host: BEGIN 1.8 ms and COMMIT 4.0 ms, where an fsync takes
 * 0.2), and each caller of a batch waits for its whole cycle.
 *
 * Once COMMIT is sent, a failure other than the database's refusal of the message
 * (`refusedBeforeCommit`) may come after a COMMIT that took effect: a lost connection, a
 * reply pg could not read, a cancel the server reports once the commit is done. The
 * transaction's id, taken with BEGIN and the first statement, then lets the database say
 * what became of it (a body that sends only `last` has no id: its outcome stays unknown;
 * `settled`): committed, and `fn`'s value is returned; rolled back, and the failure is
 * thrown as one before COMMIT would be; anything else throws `CommitOutcomeUnknown`.
 */
export async function inPooledTransaction<T>(
  orm: LedgerOrm,
  fn: (sql: Sql) => Promise<TransactionEnd<T>>,
  opts: { lockTimeoutMs?: number } = {},
): Promise<T> {
  // Checked before a connection is taken, which a throw here would leak.
  const ms = opts.lockTimeoutMs;
  if (ms !== undefined && !(Number.isSafeInteger(ms) && ms > 0)) throw new TypeError("lockTimeoutMs must be a positive integer");
  const converter = orm.em.getPlatform().getExceptionConverter();
  const pool = poolOf(orm);
  const conn = await pool.acquireConnection();
  // A simple query of several statements resolves to one result per statement.
  const several = async (text: string): Promise<pg.QueryResult[]> =>
    (await conn.query(text)) as unknown as pg.QueryResult[];
  // Set with BEGIN, so it covers every wait of the transaction, key claims included.
  const begin = ms === undefined ? "begin; " : `begin; set local lock_timeout = ${ms}; `;
  let xid: string | undefined;
  let begun = false;
  let ended = false;
  let committing = false;
  let end: TransactionEnd<T> | undefined;
  let unconfirmed: unknown;
  const sql: Sql = async <R>(text: string, params: readonly unknown[] = []) => {
    if (begun) return (await conn.query(pool.positionBindings(text), params as unknown[])).rows as R[];
    // The id costs nothing more: the batch's row locks assign one anyway.
    const first = `${begin}select pg_current_xact_id()::text as xid; ${inlineParams(text, params)}`;
    begun = true;
    const results = await several(first);
    xid = (results[results.length - 2]!.rows[0] as { xid: string }).xid;
    return results[results.length - 1]!.rows as R[];
  };
  try {
    end = await fn(sql);
    if (end.last) {
      // Built before anything is sent. On its own line: a trailing comment in the statement
      // cannot swallow the COMMIT.
      const text = `${begun ? "" : begin}${inlineParams(end.last.sql, end.last.params)}\n; commit`;
      begun = true;
      committing = true;
      const results = await several(text);
      ended = true;
      // PostgreSQL answers ROLLBACK to a COMMIT of a failed transaction.
      if (results[results.length - 1]?.command !== "COMMIT") throw new Error("the batch's COMMIT did not commit");
    } else if (begun) {
      committing = true;
      await conn.query("commit");
      ended = true;
    }
    return end.value;
  } catch (err) {
    // Best effort, and harmless where the transaction has already ended: a failed COMMIT
    // rolled it back; on a broken connection this fails too, and the pool drops it.
    if (begun && !ended) await conn.query("rollback").catch(() => {});
    if (!committing || refusedBeforeCommit(err)) throw converter.convertException(err as Error);
    unconfirmed = err;
  } finally {
    // Released before the outcome is asked for, which takes a connection of the same pool.
    await pool.releaseConnection(conn);
  }
  const status = xid === undefined ? undefined : await settled(orm, unconfirmed, xid);
  if (status === "committed") return end!.value;
  if (status === "aborted") throw converter.convertException(unconfirmed as Error);
  throw new CommitOutcomeUnknown(unconfirmed);
}

const SETTLE_WITHIN_MS = 5_000;
// One ask's most: a pooled connection that died without a word must not use up the budget.
const ASK_WITHIN_MS = 1_000;

/**
 * What became of transaction `xid`, whose COMMIT failed with `failure`, by the database's own
 * record (`pg_xact_status`), asked on other connections of the pool: "committed" or
 * "aborted"; undefined when it cannot tell within 5 s, acquiring connections and waiting for
 * replies included. Until then an answer of "in progress" (a backend still finishing its
 * COMMIT, or one that has not yet noticed that its client is gone) or a failed ask (a pooled
 * connection that died with the transaction's, a database restarting) is asked again. Logged
 * either way, on the ledger's log.
 */
async function settled(orm: LedgerOrm, failure: unknown, xid: string): Promise<"committed" | "aborted" | undefined> {
  const pool = poolOf(orm);
  const giveUp = Date.now() + SETTLE_WITHIN_MS;
  let status: "committed" | "aborted" | undefined;
  for (let pause = 10; ; pause = Math.min(pause * 2, 250)) {
    const left = giveUp - Date.now();
    if (left < 50) break;
    const answer = await xactStatus(pool, xid, Math.min(left, ASK_WITHIN_MS)).catch(() => undefined);
    if (answer === "committed" || answer === "aborted") {
      status = answer;
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(pause, Math.max(0, giveUp - Date.now()))));
  }
  // The ledger's log: initOrm's `log`, which MikroORM keeps as its logger.
  safeLog(orm.config.get("logger"))(
    `ledger: ${failureKind(failure)} after COMMIT was sent; the database reports the transaction ${status ?? "unknown"}`,
  );
  return status;
}

/** One ask of `pg_xact_status`, answered within `withinMs` or undefined. */
async function xactStatus(pool: PooledClient, xid: string, withinMs: number): Promise<unknown> {
  const until = Date.now() + withinMs;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<undefined>((resolve) => {
    timer = setTimeout(resolve, withinMs, undefined);
    timer.unref();
  });
  const acquiring = pool.acquireConnection();
  let conn: pg.Client | undefined;
  try {
    conn = await Promise.race([acquiring, late]);
  } finally {
    clearTimeout(timer);
  }
  if (conn === undefined) {
    acquiring.then((c) => pool.releaseConnection(c)).catch(() => {});
    return undefined;
  }
  try {
    const query = { text: "select pg_xact_status($1::xid8) as status", values: [xid], query_timeout: Math.max(1, until - Date.now()) };
    return (await conn.query(query)).rows[0]?.status;
  } catch (err) {
    if (sqlState(err) === undefined) {
      // No answer from the server (a timeout, a broken connection) may mean none ever comes:
      // knex's own mark for a broken connection makes the pool destroy it, not hand it out.
      (conn as { __knex__disposed?: unknown }).__knex__disposed = err;
      void conn.end().catch(() => {});
    }
    throw err;
  } finally {
    await pool.releaseConnection(conn);
  }
}

// Arbitrary but fixed: serialises `migrate` across every process sharing the database.
const MIGRATION_LOCK_KEY = 7_263_401_118;

/**
 * Applies pending migrations. Several instances may start at once: a session-level advisory
 * lock, held on a separate connection, lets one of them migrate while the others wait.
 */
export async function applyMigrations(orm: LedgerOrm, databaseUrl: string): Promise<string[]> {
  const lock = new pg.Client({ connectionString: databaseUrl, connectionTimeoutMillis: 5_000 });
  lock.on("error", () => {});
  try {
    await lock.connect();
    await lock.query("select pg_advisory_lock($1)", [MIGRATION_LOCK_KEY]);
    const applied = await orm.getMigrator().up();
    return applied.map((m) => m.name);
  } catch (err) {
    throw toLedgerError(err);
  } finally {
    await lock.end().catch(() => {});
  }
}

/**
 * The current transaction's lock waits (rows, keys) end after about `ms` with 55P03, which
 * the ledger answers UNAVAILABLE; undefined leaves the database's setting. Set first, so it
 * covers every wait that follows.
 */
export async function limitLockWaits(em: LedgerEntityManager, ms: number | undefined): Promise<void> {
  if (ms !== undefined) await runSql(em, "select set_config('lock_timeout', ?, true)", [String(ms)]);
}

/**
 * Runs `fn` in a database transaction on a fresh fork of the entity manager, retrying a
 * deadlock or serialization failure a few times, and a lost connection while `fn` ran (a
 * pooled connection can die under it, e.g. terminated by the server): nothing was
 * committed then. Once COMMIT is under way, a failure the database did not raise as a
 * refusal (a lost connection, a cancel) is settled as in `inPooledTransaction`, by the
 * transaction's id, which costs this path one more round trip (MikroORM sends BEGIN on its
 * own): committed, and `fn`'s value is returned; rolled back, and `fn` runs again (3
 * attempts in all); unknown, and it answers UNAVAILABLE "may have taken effect", never
 * INTERNAL. Every failure leaves as a LedgerError.
 */
export async function inTransaction<T>(orm: LedgerOrm, fn: (em: LedgerEntityManager) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    // Filled once `fn` is done, when only MikroORM's COMMIT is left to run. (A holder: the
    // compiler does not see an assignment made in the callback.)
    const body: { done?: { value: T; xid: string | null } } = {};
    try {
      return await orm.em.fork().transactional(async (tx) => {
        const value = await fn(tx);
        // MikroORM would flush after this callback; here, so that the id covers its writes and
        // only COMMIT is left once `done` is set.
        await tx.flush();
        const [row] = await runSql<{ xid: string | null }>(tx, "select pg_current_xact_id_if_assigned()::text as xid");
        body.done = { value, xid: row?.xid ?? null };
        return value;
      });
    } catch (err) {
      const { done } = body;
      if (done && !refusedBeforeCommit(err)) {
        // No id: `fn` wrote and locked nothing, so there was nothing to commit. (A body that
        // only NOTIFYs would get its id at COMMIT, after this read: none does.)
        const status = done.xid === null ? "committed" : await settled(orm, err, done.xid);
        if (status === "committed") return done.value;
        if (status === undefined) throw withCause(outcomeUnknown(), err);
        // Rolled back: nothing was written, so the body runs again, as the batch's calls do.
        if (attempt < 3) continue;
      }
      if ((isRetryable(err) || isConnectionError(err)) && attempt < 3) continue;
      throw toLedgerError(err);
    }
  }
}

/** A read on a fresh fork; failures leave as LedgerErrors. */
export async function inFork<T>(orm: LedgerOrm, fn: (em: LedgerEntityManager) => Promise<T>): Promise<T> {
  try {
    return await fn(orm.em.fork());
  } catch (err) {
    throw toLedgerError(err);
  }
}

/**
 * Several reads that must agree with each other (a page and its total, a verification):
 * one read-only REPEATABLE READ transaction, so every statement sees the same snapshot.
 */
export async function inSnapshot<T>(orm: LedgerOrm, fn: (em: LedgerEntityManager) => Promise<T>): Promise<T> {
  try {
    return await orm.em
      .fork()
      .transactional((tx) => fn(tx), { isolationLevel: IsolationLevel.REPEATABLE_READ, readOnly: true });
  } catch (err) {
    throw toLedgerError(err);
  }
}
