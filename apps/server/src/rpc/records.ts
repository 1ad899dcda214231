import { create } from "@bufbuild/protobuf";
import { timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  AccountBalanceSchema,
  AccountTransactionSchema,
  BalanceStatisticsSchema,
  BalanceStatusSchema,
  BalanceTotalSchema,
  BalanceTypeSchema,
  MovementSchema,
  PageMetaSchema,
  TransactionStatusSchema,
  TransactionTypeSchema,
  type AccountBalance,
  type AccountTransaction,
  type BalanceStatistics,
  type BalanceTotal,
  type Movement,
  type PageMeta,
} from "@account-balance/proto/accountbalance/v1/records_pb.js";
import type {
  AccountBalanceRecord,
  AccountTransactionRecord,
  BalanceStatistics as LedgerStatistics,
  BalanceStatus,
  BalanceTotal as LedgerTotal,
  BalanceType,
  MovementResult,
  TransactionType,
} from "@account-balance/ledger";
import { enumToWord, wordToEnum } from "./enums.js";

/** Ledger rows to contract messages, and contract enums to ledger words. */

export function toBalance(row: AccountBalanceRecord): AccountBalance {
  return create(AccountBalanceSchema, {
    id: row.id,
    userId: row.userId,
    organizationId: row.organizationId ?? undefined,
    projectId: row.projectId ?? undefined,
    customerId: row.customerId ?? undefined,
    balanceType: wordToEnum(BalanceTypeSchema, row.balanceType),
    balanceCents: BigInt(row.balanceCents),
    currency: row.currency,
    referenceCode: row.referenceCode ?? undefined,
    status: wordToEnum(BalanceStatusSchema, row.status),
    expiresAt: row.expiresAt ? timestampFromDate(row.expiresAt) : undefined,
    metadata: row.metadata,
    version: BigInt(row.version),
    createdAt: timestampFromDate(row.createdAt),
    updatedAt: timestampFromDate(row.updatedAt),
  });
}

export function toTransaction(row: AccountTransactionRecord): AccountTransaction {
  return create(AccountTransactionSchema, {
    id: row.id,
    accountBalanceId: row.accountBalanceId,
    transactionType: wordToEnum(TransactionTypeSchema, row.transactionType),
    amountCents: BigInt(row.amountCents),
    balanceBeforeCents: BigInt(row.balanceBeforeCents),
    balanceAfterCents: BigInt(row.balanceAfterCents),
    currency: row.currency,
    description: row.description ?? undefined,
    referenceCode: row.referenceCode ?? undefined,
    status: wordToEnum(TransactionStatusSchema, row.status),
    metadata: row.metadata,
    createdAt: timestampFromDate(row.createdAt),
    sequence: BigInt(row.sequence),
  });
}

export function toMovement(result: MovementResult): Movement {
  return create(MovementSchema, { balance: toBalance(result.balance), transaction: toTransaction(result.transaction) });
}

export function toTotal(total: LedgerTotal): BalanceTotal {
  return create(BalanceTotalSchema, {
    currency: total.currency,
    totalBalanceCents: total.totalBalanceCents,
    balanceCount: total.balanceCount,
    byCurrency: total.byCurrency,
    byType: total.byType.map((t) => ({ ...t, balanceType: wordToEnum(BalanceTypeSchema, t.balanceType) })),
  });
}

export function toStatistics(stats: LedgerStatistics): BalanceStatistics {
  const { firstTransactionAt, lastTransactionAt, ...numbers } = stats;
  return create(BalanceStatisticsSchema, {
    ...numbers,
    firstTransactionAt: firstTransactionAt ? timestampFromDate(firstTransactionAt) : undefined,
    lastTransactionAt: lastTransactionAt ? timestampFromDate(lastTransactionAt) : undefined,
  });
}

/** The page a list request asks for: its limit (else the route's default) and page (else 1). */
export function pageOf(req: { limit?: number; page?: number }, defaultLimit: number): { limit: number; page: number } {
  return { limit: req.limit ?? defaultLimit, page: req.page ?? 1 };
}

export function pageMeta(page: { page: number; limit: number }, total: number): PageMeta {
  return create(PageMetaSchema, {
    page: page.page,
    limit: page.limit,
    total: BigInt(total),
    hasMore: page.page * page.limit < total,
  });
}

export const balanceTypeWord = (v: number) => enumToWord(BalanceTypeSchema, v) as BalanceType | undefined;
export const transactionTypeWord = (v: number) => enumToWord(TransactionTypeSchema, v) as TransactionType | undefined;
export const balanceStatusWord = (v: number) => enumToWord(BalanceStatusSchema, v) as BalanceStatus | undefined;

/**
 * The instant as a Date, nanos cut to the millisecond. protobuf-es rounds them instead, and
 * 9999-12-31T23:59:59.9995Z, a valid Timestamp, would round into year 10000, which
 * PostgreSQL refuses.
 */
export function dateOf(ts: Timestamp | undefined): Date | undefined {
  return ts ? new Date(Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1_000_000)) : undefined;
}
