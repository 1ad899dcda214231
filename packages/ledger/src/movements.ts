import { MAX_CENTS } from "./domain.js";
import type { AccountBalanceRecord } from "./entities/account-balance.entity.js";
import type { AccountTransactionRecord } from "./entities/account-transaction.entity.js";
import { LedgerError } from "./errors.js";
import { newTransactionId } from "./ids.js";
import { requireIdempotencyKey, type Idempotency, type IdempotencyCodec, type IdempotencyKey } from "./idempotency.js";
import { inTransaction, type LedgerEntityManager, type LedgerOrm } from "./orm.js";
import {
  balanceRow,
  toBalanceRecord,
  toTransactionRecord,
  transactionRow,
  type RawRow,
} from "./records.js";
import { isUsableId, optionalString, requireAmount, requireBoolean, requireMetadata } from "./validate.js";

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

type Kind = "credit" | "debit";

interface LockedBalance {
  id: string;
  balance_cents: string;
  status: string;
  expires_at: string | null;
  expired: boolean;
}

export const movementCodec: IdempotencyCodec<{ balance: AccountBalanceRecord; transaction: AccountTransactionRecord }> = {
  encode: (v) => ({ balance: balanceRow(v.balance), transaction: transactionRow(v.transaction) }),
  decode: (stored, em) => {
    const s = stored as { balance: RawRow; transaction: RawRow };
    return { balance: toBalanceRecord(em, s.balance), transaction: toTransactionRecord(em, s.transaction) };
  },
};

export function createMovements(orm: LedgerOrm, idempotency: Idempotency): Movements {
  async function move(kind: Kind, input: CreditInput, allowNegative: boolean): Promise<MovementResult> {
    const amount = requireAmount(input.amountCents);
    const description = optionalString(input.description, "description");
    const referenceCode = optionalString(input.referenceCode, "reference_code");
    const metadata = requireMetadata(input.metadata);
    const key = requireIdempotencyKey(input.idempotency);
    // An unusable id or owner names no balance: NOT_FOUND once the lock step runs.
    const usable = isUsableId(input.balanceId) && (input.ownerId === undefined || isUsableId(input.ownerId));
    const balanceId = usable ? input.balanceId : "";
    const ownerId = input.ownerId;

    return inTransaction(orm, async (em) => {
      const { value, replayed } = await idempotency.run(em, key, kind, movementCodec, () =>
        apply(em, { kind, balanceId, ownerId, amount, allowNegative, description, referenceCode, metadata }),
      );
      return { ...value, replayed };
    });
  }

  return {
    credit: async (input) => move("credit", input, false),
    debit: async (input) => move("debit", input, requireBoolean(input.allowNegative ?? false, "allow_negative")),
  };
}

interface Apply {
  kind: Kind;
  balanceId: string;
  ownerId: string | undefined;
  amount: bigint;
  allowNegative: boolean;
  description: string | null;
  referenceCode: string | null;
  metadata: Record<string, string>;
}

const notFound = () => new LedgerError("NOT_FOUND", "balance not found");

/** One movement inside the caller's transaction: lock, check in the spec's order, write. */
async function apply(
  em: LedgerEntityManager,
  m: Apply,
): Promise<{ balance: AccountBalanceRecord; transaction: AccountTransactionRecord }> {
  if (m.balanceId === "") throw notFound();
  // The row lock serialises every movement of this balance (and the expiry sweeper).
  const locked = (await em.execute(
    `select id, balance_cents, status, expires_at,
            (expires_at is not null and expires_at <= clock_timestamp()) as expired
       from account_balances
      where id = ?${m.ownerId !== undefined ? " and user_id = ?" : ""}
      for update`,
    m.ownerId !== undefined ? [m.balanceId, m.ownerId] : [m.balanceId],
  )) as LockedBalance[];
  const row = locked[0];
  if (!row) throw notFound();
  if (row.status !== "active") {
    throw new LedgerError("BALANCE_NOT_ACTIVE", `the balance is ${row.status}`, { status: row.status });
  }
  if (row.expired) throw new LedgerError("BALANCE_EXPIRED", "the balance has expired");

  const before = BigInt(row.balance_cents);
  const after = m.kind === "credit" ? before + m.amount : before - m.amount;
  if (after > MAX_CENTS || after < -MAX_CENTS) {
    throw new LedgerError("AMOUNT_OUT_OF_RANGE", `the resulting balance would be outside ±${MAX_CENTS}`, {
      max_cents: MAX_CENTS.toString(),
    });
  }
  if (m.kind === "debit" && after < 0n && !m.allowNegative) {
    throw new LedgerError("INSUFFICIENT_BALANCE", "the balance is too low for this debit", {
      required_cents: m.amount.toString(),
      available_cents: before.toString(),
    });
  }

  const txnId = newTransactionId();
  // One statement writes both rows. The time is the database's, never earlier than the
  // balance's last change, so per balance `created_at` never runs against `sequence`;
  // milliseconds, so a record's time filters back to the same row.
  const [updated] = (await em.execute(
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
