import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  AccountBalanceAdminService,
  GetUserTotalBalanceResponseSchema,
  ListExpiringBalancesResponseSchema,
  ListUserBalancesResponseSchema,
} from "@account-balance/proto/accountbalance/v1/account_balance_admin_service_pb.js";
import type { Ledger } from "@account-balance/ledger";
import { balanceFilter, DEFAULT_BALANCE_LIMIT } from "./balance-filter.js";
import { balanceTypeWord, pageMeta, pageOf, toBalance, toTotal } from "./records.js";

const DEFAULT_EXPIRING_DAYS = 7;

/** AccountBalanceAdminService: the auth interceptor has already required an admin role or a service token. */
export function adminService(ledger: Ledger): ServiceImpl<typeof AccountBalanceAdminService> {
  return {
    async listUserBalances(req) {
      const page = pageOf(req, DEFAULT_BALANCE_LIMIT);
      const rows = await ledger.balances.list(balanceFilter(req.userId, req), page);
      return create(ListUserBalancesResponseSchema, { data: rows.items.map(toBalance), meta: pageMeta(page, rows.total) });
    },

    async getUserTotalBalance(req) {
      const total = await ledger.reads.totals(balanceFilter(req.userId, req));
      return create(GetUserTotalBalanceResponseSchema, { data: toTotal(total) });
    },

    async listExpiringBalances(req) {
      const page = pageOf(req, DEFAULT_BALANCE_LIMIT);
      const rows = await ledger.reads.listExpiring(
        {
          // `days` is the product's older name for the same window.
          withinDays: req.withinDays ?? req.days ?? DEFAULT_EXPIRING_DAYS,
          currency: req.currency,
          balanceType: balanceTypeWord(req.balanceType),
        },
        page,
      );
      return create(ListExpiringBalancesResponseSchema, { data: rows.items.map(toBalance), meta: pageMeta(page, rows.total) });
    },
  };
}
