import { newTransactionId } from "./ids.js";
import { inTransaction, runSql, type LedgerOrm } from "./orm.js";
import { requirePositiveInt } from "./validate.js";

export interface SweepOptions {
  /** Balances handled per database transaction: 1 … 1000, default 100. */
  batchSize?: number;
}

export interface Expiry {
  /**
   * Expires one batch of due balances (active, expires_at <= now): a positive balance is
   * taken to zero by an `expiration` transaction, then the status becomes `expired`.
   * Returns how many balances it expired. Rows locked by anyone else (a movement, another
   * sweeper) are skipped and picked up by a later run.
   */
  sweepExpired(opts?: SweepOptions): Promise<number>;
}

export const DEFAULT_SWEEP_BATCH = 100;
const MAX_SWEEP_BATCH = 1000;

/** Due balances, oldest expiry first; served by account_balances_expiring_idx. */
export const DUE_BALANCES_SQL = `select id, balance_cents from account_balances
  where status = 'active' and expires_at is not null and expires_at <= now()
  order by expires_at, id
  limit ?
  for update skip locked`;

/** Expires the due balances given as JSON (balance_id, txn_id, before_cents); returns how many. */
export const EXPIRE_BALANCES_SQL = `with v as (
    select * from jsonb_to_recordset(?::jsonb) as v(balance_id text, txn_id text, before_cents bigint)
  ), u as (
    update account_balances b
       set balance_cents = case when v.before_cents > 0 then 0 else b.balance_cents end,
           status = 'expired',
           version = b.version + 1,
           last_sequence = b.last_sequence + case when v.before_cents > 0 then 1 else 0 end,
           updated_at = greatest(date_trunc('milliseconds', clock_timestamp()), b.updated_at)
      from v
     where b.id = v.balance_id and b.status = 'active'
       -- A primary-key lookup, not a hash join against every balance (movement-batch.ts).
       and b.id = any(array(select v.balance_id from v))
    returning b.id, b.currency, b.last_sequence, b.updated_at, v.txn_id, v.before_cents
  ), t as (
    insert into account_transactions (id, account_balance_id, transaction_type, amount_cents,
           balance_before_cents, balance_after_cents, currency, description, reference_code, status,
           metadata, created_at, sequence)
    select u.txn_id, u.id, 'expiration', u.before_cents, u.before_cents, 0, u.currency, 'balance expired',
           null, 'completed', '{}'::jsonb, u.updated_at, u.last_sequence
      from u
     where u.before_cents > 0
  )
  select count(*)::int as n from u`;

interface DueRow {
  id: string;
  balance_cents: string;
}

export function createExpiry(orm: LedgerOrm): Expiry {
  async function sweepExpired(opts: SweepOptions = {}): Promise<number> {
    const batchSize = requirePositiveInt(opts.batchSize ?? DEFAULT_SWEEP_BATCH, "batch_size", MAX_SWEEP_BATCH);
    return inTransaction(orm, async (em) => {
      // SKIP LOCKED: many sweepers never wait for (or deadlock with) each other or with
      // movements. PostgreSQL re-checks the WHERE on the newest row version once locked, so
      // a balance expired or changed meanwhile by someone else is not picked.
      const due = (await runSql(em, DUE_BALANCES_SQL, [batchSize])) as DueRow[];
      if (due.length === 0) return 0;

      const batch = due.map((r) => ({ balance_id: r.id, txn_id: newTransactionId(), before_cents: r.balance_cents }));
      // A negative balance (allowed by an admin) keeps its debt: expiry only removes money.
      const [done] = (await runSql(
        em,
        EXPIRE_BALANCES_SQL,
        [JSON.stringify(batch)],
      )) as Array<{ n: number }>;
      return done?.n ?? 0;
    });
  }

  return { sweepExpired };
}

export interface SweeperOptions {
  /** Pause between runs. */
  intervalMs: number;
  batchSize?: number;
  /** One line per run that did something (never SQL). */
  log?: (msg: string) => void;
  /** One line per failed run (never SQL); default: `log`. An operator must see these at warn. */
  warn?: (msg: string) => void;
}

export interface Sweeper {
  /** Stops the timer and waits for a run in progress. */
  stop(): Promise<void>;
}

/**
 * Runs the expiry sweep now and then every `intervalMs`: each run drains every due balance
 * (batch after batch), then purges expired idempotency keys. Safe to run in every instance.
 */
export function startSweeper(
  ledger: {
    expiry: Pick<Expiry, "sweepExpired">;
    idempotency: { purgeExpired(): Promise<number> };
  },
  opts: SweeperOptions,
): Sweeper {
  const intervalMs = requirePositiveInt(opts.intervalMs, "interval_ms");
  const batchSize = opts.batchSize ?? DEFAULT_SWEEP_BATCH;
  const log = opts.log ?? (() => {});
  const warn = opts.warn ?? log;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;

  async function runOnce(): Promise<void> {
    try {
      let expired = 0;
      for (;;) {
        const n = await ledger.expiry.sweepExpired({ batchSize });
        expired += n;
        if (n < batchSize || stopped) break;
      }
      if (expired > 0) log(`expiry sweeper: expired ${expired} balance(s)`);
      const purged = await ledger.idempotency.purgeExpired();
      if (purged > 0) log(`expiry sweeper: purged ${purged} idempotency key(s)`);
    } catch (err) {
      warn(`expiry sweeper: run failed: ${err instanceof Error ? err.message : "unknown error"}`);
    }
  }

  function schedule(delay: number): void {
    if (stopped) return;
    timer = setTimeout(() => {
      running = runOnce().finally(() => {
        running = undefined;
        schedule(intervalMs);
      });
    }, delay);
    timer.unref();
  }

  schedule(0);
  return {
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running;
    },
  };
}
