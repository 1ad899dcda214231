import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  AccountBalanceAdminService,
  ListUserBalancesResponseSchema,
} from "@account-balance/proto/accountbalance/v1/account_balance_admin_service_pb.js";
import type { Ledger } from "@account-balance/ledger";
import { balanceFilter, DEFAULT_BALANCE_LIMIT } from "./balance-filter.js";
import { pageMeta, toBalance } from "./records.js";

/** AccountBalanceAdminService: the auth interceptor has already required an admin role or a service token. */
export function adminService(ledger: Ledger): Partial<ServiceImpl<typeof AccountBalanceAdminService>> {
  return {
    async listUserBalances(req) {
      const page = { limit: req.limit ?? DEFAULT_BALANCE_LIMIT, page: req.page ?? 1 };
      const rows = await ledger.balances.list(balanceFilter(req.userId, req), page);
      return create(ListUserBalancesResponseSchema, { data: rows.items.map(toBalance), meta: pageMeta(page, rows.total) });
    },
  };
}
