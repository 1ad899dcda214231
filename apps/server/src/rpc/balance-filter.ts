import type { BalanceFilter } from "@account-balance/ledger";
import { balanceStatusWord, balanceTypeWord } from "./records.js";

/** The filters ListMyBalances, ListUserBalances and the totals share (spec route #1). */
export interface BalanceFilterFields {
  referenceCode?: string;
  balanceType: number;
  status: number;
  organizationId?: string;
  projectId?: string;
  currency?: string;
}

export function balanceFilter(userId: string, req: BalanceFilterFields): BalanceFilter {
  return {
    userId,
    referenceCode: req.referenceCode,
    balanceType: balanceTypeWord(req.balanceType),
    status: balanceStatusWord(req.status),
    organizationId: req.organizationId,
    projectId: req.projectId,
    currency: req.currency,
  };
}

export const DEFAULT_BALANCE_LIMIT = 100;
