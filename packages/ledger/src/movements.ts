import type { AccountBalanceRecord } from "./entities/account-balance.entity.js";
import type { AccountTransactionRecord } from "./entities/account-transaction.entity.js";
import { LedgerError, type Reason } from "./errors.js";
import { newTransactionId } from "./ids.js";
import type { Idempotency, IdempotencyKey } from "./idempotency.js";
import { MovementBatcher, type BatchingOptions } from "./movement-batcher.js";
import { inTransaction, limitLockWaits, runSql, type LedgerEntityManager, type LedgerOrm } from "./orm.js";
import { ownedBalance } from "./ownership.js";
import { checkMovement, movementCodec, notFound, prepareMovement, type MovementValue } from "./movement-rules.js";
import { toBalanceRecord, toTransactionRecord, type RawRow } from "./records.js";

export interface CreditInput {
  balanceId: string;
  /** 1 … 2^53-1 minor units of the balance's currency. */
  amountCents: bigint;
  description?: string | null;
  referenceCode?: string | null;
  metadata?: Record<string, string>;
  /** Restricts the movement to a balance of this user; anyone else's balance is NOT_FOUND. */
  ownerId?: string;
  idempotency?: IdempotencyKey;
}

export interface DebitInput extends CreditInput {
  /** Lets the balance go below zero (admins and services only; the caller decides who may). */
  allowNegative: boolean;
}

export interface MovementResult {
  /** The balance right after the movement. */
  balance: AccountBalanceRecord;
  /** The transaction the movement wrote. */
  transaction: AccountTransactionRecord;
  /** True when this is the stored result of an earlier call with the same idempotency key. */
  replayed: boolean;
}

export interface Movements {
  credit(input: CreditInput): Promise<MovementResult>;
  debit(input: DebitInput): Promise<MovementResult>;
}

export type MovementKind = "credit" | "debit";

/** What a finished movement call reports to `onMovement`: "ok" (replays included) or the refusal's reason. */
export type MovementOutcome = "ok" | Reason;

export interface MovementHooks {
  /** Called once per credit or debit call with its outcome. Must not throw (errors are ignored). */
  onMovement?: (type: MovementKind, outcome: MovementOutcome) => void;
  /** Called once per batch transaction attempt with the number of calls in it (batching only). */
  onBatch?: (size: number) => void;
}

/** A movement whose input has been checked: what both the batched and the direct path run. */
export interface MovementRequest {
  kind: MovementKind;
  /** "" when the id cannot name a balance (the movement is then NOT_FOUND). */
  balanceId: string;
  ownerId: string | undefined;
  amount: bigint;
  allowNegative: boolean;
  description: string | null;
  referenceCode: string | null;
  metadata: Record<string, string>;
  key: IdempotencyKey | undefined;
}

export interface MovementsOptions extends MovementHooks {
  /** One line per notable event (never SQL). */
  log?: (msg: string) => void;
  /** Group commit of concurrent movements (see movement-batcher.ts). Off: one transaction per call. */
  batching?: BatchingOptions | false;
  /** Connections in the pool: the batcher keeps its lanes to what its batches leave. */
  poolMax?: number;
}

/** The movements of a ledger, plus what `close()` needs. */
export interface MovementsService extends Movements {
  /** Stops taking movements and waits for those queued or in flight. */
  drain(): Promise<void>;
}

export function createMovements(
  orm: LedgerOrm,
  idempotency: Idempotency,
  opts: MovementsOptions = {},
): MovementsService {
  const single = (m: MovementRequest): Promise<MovementResult> => moveOne(orm, idempotency, m);
  const batcher = opts.batching
    ? new MovementBatcher(orm, idempotency, (m, lockTimeoutMs) => moveOne(orm, idempotency, m, lockTimeoutMs), {
        ...opts.batching,
        ...(opts.poolMax !== undefined ? { poolMax: opts.poolMax } : {}),
        ...(opts.onBatch ? { onBatch: opts.onBatch } : {}),
        ...(opts.log ? { log: opts.log } : {}),
      })
    : undefined;
  const run = batcher ? (m: MovementRequest) => batcher.submit(m) : single;
  let closing = false;

  async function move(kind: MovementKind, input: CreditInput | DebitInput): Promise<MovementResult> {
    let result: MovementResult;
    try {
      if (closing) throw new LedgerError("UNAVAILABLE", "the ledger is closing, try again later");
      result = await run(prepareMovement(kind, input));
    } catch (err) {
      report(kind, err instanceof LedgerError ? err.reason : "INTERNAL");
      throw err;
    }
    report(kind, "ok");
    return result;
  }

  function report(kind: MovementKind, outcome: MovementOutcome): void {
    if (!opts.onMovement) return;
    try {
      opts.onMovement(kind, outcome);
    } catch {
      // Metrics must never change a movement's outcome.
    }
  }

  return {
    credit: (input) => move("credit", input),
    debit: (input) => move("debit", input),
    async drain() {
      closing = true;
      await batcher?.drain();
    },
  };
}

/**
 * One movement in its own database transaction: the unbatched path, and the batch's fallback,
 * which waits for a lock at most `lockTimeoutMs` (then UNAVAILABLE, nothing written).
 */
export function moveOne(orm: LedgerOrm, idempotency: Idempotency, m: MovementRequest, lockTimeoutMs?: number): Promise<MovementResult> {
  return inTransaction(orm, async (em) => {
    // Before the key claim, whose wait it covers too.
    await limitLockWaits(em, lockTimeoutMs);
    const { value, replayed } = await idempotency.run(em, m.key, m.kind, movementCodec, () => apply(em, m));
    return { ...value, replayed };
  });
}

interface LockedBalance {
  id: string;
  balance_cents: string;
  status: string;
  expires_at: string | null;
  expired: boolean;
}

/** One movement inside the caller's transaction: lock, check in the spec's order, write. */
async function apply(em: LedgerEntityManager, m: MovementRequest): Promise<MovementValue> {
  if (m.balanceId === "") throw notFound();
  // The row lock serialises every movement of this balance (and the expiry sweeper).
  const where = ownedBalance(m.balanceId, m.ownerId);
  const locked = (await runSql(
    em,
    // Expiry judged above the lock, after any wait for it (see LOCK_BALANCES_SQL).
    `select l.*, (l.expires_at is not null and l.expires_at <= clock_timestamp()) as expired
       from (select id, balance_cents, status, expires_at
               from account_balances
              where ${where.sql}
                for update) l`,
    where.params,
  )) as LockedBalance[];
  const row = locked[0];
  if (!row) throw notFound();

  const before = BigInt(row.balance_cents);
  const after = checkMovement({ status: row.status, expired: row.expired, cents: before }, m);

  const txnId = newTransactionId();
  // One statement writes both rows. The time is the database's, never earlier than the
  // balance's last change, so per balance `created_at` never runs against `sequence`;
  // milliseconds, so a record's time filters back to the same row.
  const [updated] = (await runSql(
    em,
    `with u as (
       update account_balances
          set balance_cents = ?, version = version + 1, last_sequence = last_sequence + 1,
              updated_at = greatest(date_trunc('milliseconds', clock_timestamp()), updated_at)
        where id = ?
       returning *
     ), t as (
       insert into account_transactions (id, account_balance_id, transaction_type, amount_cents,
              balance_before_cents, balance_after_cents, currency, description, reference_code, status,
              metadata, created_at, sequence)
       select ?, u.id, ?, ?, ?, u.balance_cents, u.currency, ?, ?, 'completed', ?::jsonb, u.updated_at, u.last_sequence
         from u
     )
     select * from u`,
    [
      after.toString(),
      row.id,
      txnId,
      m.kind,
      m.amount.toString(),
      before.toString(),
      m.description,
      m.referenceCode,
      JSON.stringify(m.metadata),
    ],
  )) as RawRow[];
  if (!updated) throw new LedgerError("INTERNAL", "internal ledger error");

  const balance = toBalanceRecord(em, updated);
  const transaction = toTransactionRecord(em, {
    id: txnId,
    account_balance_id: balance.id,
    user_id: balance.userId,
    transaction_type: m.kind,
    amount_cents: m.amount.toString(),
    balance_before_cents: before.toString(),
    balance_after_cents: after.toString(),
    currency: balance.currency,
    description: m.description,
    reference_code: m.referenceCode,
    status: "completed",
    metadata: m.metadata,
    created_at: updated.updated_at,
    sequence: balance.lastSequence.toString(),
  });
  return { balance, transaction };
}
