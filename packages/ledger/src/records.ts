import type { AccountBalanceRecord } from "./entities/account-balance.entity.js";
import type { AccountTransactionRecord } from "./entities/account-transaction.entity.js";
import type { LedgerEntityManager } from "./orm.js";

/**
 * A row as the database spells it (snake_case columns, int8 as decimal strings, times as
 * strings). Raw SQL results are turned into records field by field, with the same fields and
 * types as an entity the ORM loads; the same shape, JSON-encoded, is what an idempotency key
 * stores to replay a result.
 */
export type RawRow = Record<string, unknown>;

/**
 * A balance row to its record, field by field, for the reason given at `transactionFromRow`:
 * GetBalance, every movement's answer and every replay build one. Same fields and types as
 * a loaded entity (tests compare the two).
 */
export function balanceFromRow(row: RawRow, parseDate: (v: unknown) => Date): AccountBalanceRecord {
  return {
    id: row.id,
    userId: row.user_id,
    organizationId: row.organization_id ?? null,
    projectId: row.project_id ?? null,
    customerId: row.customer_id ?? null,
    balanceType: row.balance_type,
    balanceCents: BigInt(row.balance_cents as string),
    currency: row.currency,
    referenceCode: row.reference_code ?? null,
    // `lapsed`: selected with LAPSED_SQL by reads of the current state (see balance-filter.ts).
    status: row.lapsed === true ? "expired" : row.status,
    expiresAt: row.expires_at == null ? null : parseDate(row.expires_at),
    metadata: { ...(row.metadata as Record<string, string>) },
    version: BigInt(row.version as string),
    lastSequence: BigInt(row.last_sequence as string),
    createdAt: parseDate(row.created_at),
    updatedAt: parseDate(row.updated_at),
  } as AccountBalanceRecord;
}

export function toBalanceRecord(em: LedgerEntityManager, row: RawRow): AccountBalanceRecord {
  return balanceFromRow(row, dateParser(em));
}

/**
 * A transaction row to its record, field by field. Histories return up to 500 rows a page and
 * batches one per movement: the ORM's `em.map` (hydration, identity map, change-tracking
 * snapshots) cost several times the rest of the work. Same fields and types as a loaded
 * entity (tests compare them); dates are parsed by the ORM's own platform.
 */
export function transactionFromRow(row: RawRow, parseDate: (v: unknown) => Date): AccountTransactionRecord {
  return {
    id: row.id,
    accountBalanceId: row.account_balance_id,
    userId: row.user_id,
    transactionType: row.transaction_type,
    amountCents: BigInt(row.amount_cents as string),
    balanceBeforeCents: BigInt(row.balance_before_cents as string),
    balanceAfterCents: BigInt(row.balance_after_cents as string),
    currency: row.currency,
    description: row.description ?? null,
    referenceCode: row.reference_code ?? null,
    status: row.status,
    metadata: { ...(row.metadata as Record<string, string>) },
    createdAt: parseDate(row.created_at),
    sequence: BigInt(row.sequence as string),
  } as AccountTransactionRecord;
}

/** The ORM platform's date parser, accepting the Date a driver may already have made. */
export function dateParser(em: LedgerEntityManager): (v: unknown) => Date {
  const platform = em.getPlatform();
  return (v) => (v instanceof Date ? v : (platform.parseDate(v as string) as Date));
}

export function toTransactionRecord(em: LedgerEntityManager, row: RawRow): AccountTransactionRecord {
  return transactionFromRow(row, dateParser(em));
}

const iso = (d: Date | null | undefined): string | null => (d ? d.toISOString() : null);

/** The columns of a balance, JSON-safe (bigints as strings, times as ISO-8601). */
export function balanceRow(b: AccountBalanceRecord): RawRow {
  return {
    id: b.id,
    user_id: b.userId,
    organization_id: b.organizationId ?? null,
    project_id: b.projectId ?? null,
    customer_id: b.customerId ?? null,
    balance_type: b.balanceType,
    balance_cents: b.balanceCents.toString(),
    currency: b.currency,
    reference_code: b.referenceCode ?? null,
    status: b.status,
    expires_at: iso(b.expiresAt),
    metadata: b.metadata,
    version: b.version.toString(),
    last_sequence: b.lastSequence.toString(),
    created_at: iso(b.createdAt),
    updated_at: iso(b.updatedAt),
  };
}

/** The columns of a transaction, JSON-safe. */
export function transactionRow(t: AccountTransactionRecord): RawRow {
  return {
    id: t.id,
    account_balance_id: t.accountBalanceId,
    user_id: t.userId,
    transaction_type: t.transactionType,
    amount_cents: t.amountCents.toString(),
    balance_before_cents: t.balanceBeforeCents.toString(),
    balance_after_cents: t.balanceAfterCents.toString(),
    currency: t.currency,
    description: t.description ?? null,
    reference_code: t.referenceCode ?? null,
    status: t.status,
    metadata: t.metadata,
    created_at: iso(t.createdAt),
    sequence: t.sequence.toString(),
  };
}
