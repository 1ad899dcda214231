import path from "node:path";
import { createBalances, type Balances } from "./balances.js";
import { createExpiry, type Expiry } from "./expiry.js";
import { checkIdempotencyTtl, createIdempotency, type Idempotency } from "./idempotency.js";
import { createIntegrity, type Integrity } from "./integrity.js";
import { checkBatchingOptions, DEFAULT_BATCH_LOCK_TIMEOUT_MS, type BatchingOptions } from "./movement-batcher.js";
import { createMovements, type MovementKind, type MovementOutcome, type Movements } from "./movements.js";
import { createReads, type Reads } from "./reads.js";
import { isConnectionError, isPoolTimeout, openFailure } from "./db-errors.js";
import { startEmbeddedPostgres, type RunningPostgres } from "./embedded.js";
import { LedgerError } from "./errors.js";
import { applyMigrations, checkServerVersion, DEFAULT_POOL_MAX, initOrm, MIGRATIONS_TABLE, migrationNames, runSql, type LedgerOrm } from "./orm.js";
import { createSessions, type Sessions } from "./sessions.js";

export interface OpenLedgerOptions {
  /** PostgreSQL URL. Unset: an embedded PostgreSQL is started with its data in `dataDir`. */
  databaseUrl?: string;
  /** Embedded cluster folder (only without databaseUrl). Default: `.data/postgres` under process.cwd(). */
  dataDir?: string;
  /** Embedded cluster port (only without databaseUrl). Default: a free port. */
  port?: number;
  /** Apply pending migrations while opening. Default true. */
  migrate?: boolean;
  /** Maximum connections in the pool. Default 10. */
  poolMax?: number;
  /** One line per notable event (never SQL, never passwords). */
  log?: (msg: string) => void;
  /** How long idempotency keys are kept, in seconds: at least (and by default) 86400. */
  idempotencyTtlSeconds?: number;
  /**
   * Group commit of credits and debits (default on): concurrent movements of this process
   * share one database transaction, each with its own outcome. `false`: one transaction per
   * movement. See docs/money.md, "Group commit".
   */
  batching?: boolean | BatchingOptions;
  /** Called once per batch transaction attempt with how many movements it holds (metrics). */
  onBatch?: (size: number) => void;
  /** Called once per credit or debit call: "ok" (replays too) or the refusal's reason (metrics). */
  onMovement?: (type: MovementKind, outcome: MovementOutcome) => void;
}

export interface Readiness {
  ok: boolean;
  detail?: string;
}

export interface Ledger {
  readonly balances: Balances;
  /** Credits and debits. */
  readonly movements: Movements;
  /** Transaction history, totals, statistics, expiring balances. */
  readonly reads: Reads;
  /** Idempotency keys: the guard every mutation uses, and their purge. */
  readonly idempotency: Idempotency;
  /** The expiry sweep (see also startSweeper). */
  readonly expiry: Expiry;
  /** Verification of the ledger's invariant. */
  readonly integrity: Integrity;
  readonly sessions: Sessions;
  /**
   * Database reachable and every migration applied. Never throws; answers within ~3 s. One
   * check at a time, its answer shared by every caller waiting for it.
   */
  ready(): Promise<Readiness>;
  /** Closes the pool, then stops the embedded PostgreSQL if this ledger started one. */
  close(): Promise<void>;
  /** The MikroORM instance, for wiring and tests. One per ledger; fork it per operation. */
  readonly orm: LedgerOrm;
  /** True when this ledger runs its own embedded PostgreSQL. */
  readonly embedded: boolean;
  /** True when credits and debits are group-committed (OpenLedgerOptions.batching). */
  readonly batching: boolean;
}

export const DEFAULT_DATA_DIR = path.join(".data", "postgres");
const EMBEDDED_DATABASE = "account_balance";
const READY_TIMEOUT_MS = 3_000;

export async function openLedger(opts: OpenLedgerOptions = {}): Promise<Ledger> {
  const log = opts.log ?? (() => {});
  // Checked before anything starts: a bad value must not leave a cluster running.
  const ttlSeconds = checkIdempotencyTtl(opts.idempotencyTtlSeconds);
  const batching = opts.batching === false ? false : checkBatchingOptions(opts.batching === true ? {} : (opts.batching ?? {}));
  let embedded: RunningPostgres | undefined;
  let databaseUrl = opts.databaseUrl;
  if (!databaseUrl) {
    embedded = await startEmbeddedPostgres({
      dataDir: path.resolve(process.cwd(), opts.dataDir ?? DEFAULT_DATA_DIR),
      ...(opts.port !== undefined ? { port: opts.port } : {}),
      log,
    });
    try {
      await embedded.ensureDatabase(EMBEDDED_DATABASE);
    } catch (err) {
      await embedded.stop();
      throw err;
    }
    databaseUrl = embedded.url(EMBEDDED_DATABASE);
  }

  let orm: LedgerOrm;
  try {
    orm = await initOrm({ databaseUrl, ...(opts.poolMax !== undefined ? { poolMax: opts.poolMax } : {}), log });
  } catch (err) {
    await embedded?.stop();
    throw err;
  }
  // With migrations, the database must answer at open (without, the ledger opens while it is
  // down and `ready()` says so): the server's version is checked with them.
  if (opts.migrate !== false) {
    try {
      const [server] = await runSql<{ v: string }>(orm.em.fork(), "select current_setting('server_version_num') as v");
      checkServerVersion(server?.v ?? "");
      const applied = await applyMigrations(orm, databaseUrl);
      if (applied.length > 0) log(`ledger: applied migrations ${applied.join(", ")}`);
    } catch (err) {
      await orm.close(true).catch(() => {});
      await embedded?.stop();
      throw openFailure(err);
    }
  }

  let closed: Promise<void> | undefined;
  // Callers at the same moment share one check; an outage still shows on the next one.
  const readiness = sharedReadiness(() => checkReady(orm), 0);
  const idempotency = createIdempotency(orm, { ttlSeconds });
  const movements = createMovements(orm, idempotency, {
    batching,
    poolMax: opts.poolMax ?? DEFAULT_POOL_MAX,
    log,
    ...(opts.onBatch ? { onBatch: opts.onBatch } : {}),
    ...(opts.onMovement ? { onMovement: opts.onMovement } : {}),
  });
  return {
    balances: createBalances(orm, idempotency, { lockTimeoutMs: batching === false ? DEFAULT_BATCH_LOCK_TIMEOUT_MS : batching.lockTimeoutMs }),
    movements: { credit: movements.credit, debit: movements.debit },
    batching: batching !== false,
    reads: createReads(orm),
    idempotency,
    expiry: createExpiry(orm),
    integrity: createIntegrity(orm),
    sessions: createSessions(orm),
    orm,
    embedded: embedded !== undefined,
    ready: () => (closed ? Promise.resolve({ ok: false, detail: "closed" }) : readiness()),
    close() {
      closed ??= (async () => {
        // Movements already accepted finish (or fail) before the pool goes away.
        await movements.drain();
        await orm.close(true).catch(() => {});
        await embedded?.stop();
      })();
      return closed;
    },
  };
}

/**
 * `check` shared by every caller: the one in flight, or the last answer for `reuseMs` after it
 * came (0: only the one in flight). Probes and health checks ask without credentials, and each
 * answer costs a transaction on the pool the movements use.
 */
export function sharedReadiness(check: () => Promise<Readiness>, reuseMs: number, now: () => number = Date.now): () => Promise<Readiness> {
  let last: { promise: Promise<Readiness>; settledAt: number | undefined } | undefined;
  return () => {
    if (last && (last.settledAt === undefined || now() - last.settledAt < reuseMs)) return last.promise;
    const current: { promise: Promise<Readiness>; settledAt: number | undefined } = { promise: check(), settledAt: undefined };
    current.promise.finally(() => {
      current.settledAt = now();
    }).catch(() => {});
    last = current;
    return current.promise;
  };
}

async function checkReady(orm: LedgerOrm): Promise<Readiness> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<Readiness>((resolve) => {
    timer = setTimeout(() => resolve({ ok: false, detail: "database did not answer in time" }), READY_TIMEOUT_MS);
  });
  const check = (async (): Promise<Readiness> => {
    try {
      const knex = orm.em.getKnex();
      const applied = await knex.transaction(async (trx) => {
        await trx.raw("set local statement_timeout = 2000");
        const exists = await trx.raw("select to_regclass(?) as t", [MIGRATIONS_TABLE]);
        if (!exists.rows[0]?.t) return new Set<string>();
        const rows = await trx.raw(`select name from ${MIGRATIONS_TABLE}`);
        return new Set<string>(rows.rows.map((r: { name: string }) => r.name));
      });
      const pending = migrationNames.filter((n) => !applied.has(n));
      if (pending.length > 0) return { ok: false, detail: `${pending.length} migration(s) not applied` };
      return { ok: true };
    } catch (err) {
      return { ok: false, detail: isPoolTimeout(err) ? "no free database connection" : isConnectionError(err) ? "database unreachable" : "database check failed" };
    }
  })();
  try {
    return await Promise.race([check, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Applies pending migrations to the database at `databaseUrl` (the `migrate` command). */
export async function migrate(databaseUrl: string, opts: { log?: (msg: string) => void } = {}): Promise<string[]> {
  if (!databaseUrl) throw new LedgerError("VALIDATION_FAILED", "a database URL is required to migrate");
  const orm = await initOrm({ databaseUrl, poolMax: 2, ...(opts.log ? { log: opts.log } : {}) });
  try {
    return await applyMigrations(orm, databaseUrl);
  } finally {
    await orm.close(true).catch(() => {});
  }
}
