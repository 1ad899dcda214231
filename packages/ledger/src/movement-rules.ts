import { MAX_CENTS } from "./domain.js";
import { LedgerError } from "./errors.js";
import { requireIdempotencyKey, type IdempotencyCodec } from "./idempotency.js";
import type { CreditInput, DebitInput, MovementKind, MovementRequest } from "./movements.js";
import { balanceRow, toBalanceRecord, toTransactionRecord, transactionRow, type RawRow } from "./records.js";
import type { AccountBalanceRecord } from "./entities/account-balance.entity.js";
import type { AccountTransactionRecord } from "./entities/account-transaction.entity.js";
import { isUsableId, optionalString, requireAmount, requireBoolean, requireMetadata } from "./validate.js";

// What a credit or debit is allowed to do, shared by the one-at-a-time and the batched path
// so that both accept and refuse exactly the same movements.

export type MovementValue = { balance: AccountBalanceRecord; transaction: AccountTransactionRecord };

export const movementCodec: IdempotencyCodec<MovementValue> = {
  encode: (v) => ({ balance: balanceRow(v.balance), transaction: transactionRow(v.transaction) }),
  decode: (stored, em) => {
    const s = stored as { balance: RawRow; transaction: RawRow };
    return { balance: toBalanceRecord(em, s.balance), transaction: toTransactionRecord(em, s.transaction) };
  },
};

/** Input checks, before any database work: VALIDATION_FAILED with `details.field`. */
export function prepareMovement(kind: MovementKind, input: CreditInput | DebitInput): MovementRequest {
  const allowNegative =
    kind === "debit" ? requireBoolean((input as DebitInput).allowNegative ?? false, "allow_negative") : false;
  const amount = requireAmount(input.amountCents);
  const description = optionalString(input.description, "description");
  const referenceCode = optionalString(input.referenceCode, "reference_code");
  const metadata = requireMetadata(input.metadata);
  const key = requireIdempotencyKey(input.idempotency);
  // An unusable id or owner names no balance: NOT_FOUND once the lock step runs.
  const usable = isUsableId(input.balanceId) && (input.ownerId === undefined || isUsableId(input.ownerId));
  return {
    kind,
    balanceId: usable ? input.balanceId : "",
    ownerId: input.ownerId,
    amount,
    allowNegative,
    description,
    referenceCode,
    metadata,
    key,
  };
}

export const notFound = (): LedgerError => new LedgerError("NOT_FOUND", "balance not found");

/** The state of a locked balance that the checks read. */
export interface MovableBalance {
  status: string;
  expired: boolean;
  cents: bigint;
}

/**
 * The spec's checks on a locked, visible balance, first refusal wins: status → expiry →
 * range → funds. Returns the balance after the movement. Both paths use it, so a batch
 * refuses exactly what one movement at a time would.
 */
export function checkMovement(b: MovableBalance, m: MovementRequest): bigint {
  if (b.status !== "active") {
    throw new LedgerError("BALANCE_NOT_ACTIVE", `the balance is ${b.status}`, { status: b.status });
  }
  if (b.expired) throw new LedgerError("BALANCE_EXPIRED", "the balance has expired");
  const after = m.kind === "credit" ? b.cents + m.amount : b.cents - m.amount;
  if (after > MAX_CENTS || after < -MAX_CENTS) {
    throw new LedgerError("AMOUNT_OUT_OF_RANGE", `the resulting balance would be outside ±${MAX_CENTS}`, {
      max_cents: MAX_CENTS.toString(),
    });
  }
  if (m.kind === "debit" && after < 0n && !m.allowNegative) {
    throw new LedgerError("INSUFFICIENT_BALANCE", "the balance is too low for this debit", {
      required_cents: m.amount.toString(),
      available_cents: b.cents.toString(),
    });
  }
  return after;
}

