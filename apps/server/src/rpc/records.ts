import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  AccountBalanceSchema,
  BalanceStatusSchema,
  BalanceTypeSchema,
  PageMetaSchema,
  type AccountBalance,
  type PageMeta,
} from "@account-balance/proto/accountbalance/v1/records_pb.js";
import type { AccountBalanceRecord, BalanceStatus, BalanceType } from "@account-balance/ledger";
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

export function pageMeta(page: { page: number; limit: number }, total: number): PageMeta {
  return create(PageMetaSchema, {
    page: page.page,
    limit: page.limit,
    total: BigInt(total),
    hasMore: page.page * page.limit < total,
  });
}

export const balanceTypeWord = (v: number) => enumToWord(BalanceTypeSchema, v) as BalanceType | undefined;
export const balanceStatusWord = (v: number) => enumToWord(BalanceStatusSchema, v) as BalanceStatus | undefined;

export function dateOf(ts: Timestamp | undefined): Date | undefined {
  return ts ? timestampDate(ts) : undefined;
}
