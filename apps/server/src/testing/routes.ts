import type { JsonObject } from "@bufbuild/protobuf";
import type { HttpRule } from "./protocols.js";

/**
 * Every route of spec section 2, with the RPC it maps to and a sample request.
 *
 * `coverage`:
 * - "full": the RPC is implemented; routes.test.ts checks that the sample succeeds on every
 *   protocol and other blocks check its behaviour (amounts, rows written, refusals).
 * - "reachable": for an RPC that is declared but not wired yet. The tests then only prove that
 *   the REST route exists and reaches this RPC through the gateway and the interceptor chain
 *   on all three protocols: unauthenticated -> UNAUTHENTICATED everywhere; authenticated ->
 *   success or "<rpc> is not implemented" (never another RPC, never "no route", never a 5xx).
 *   Such a row must be switched to "full" (with behaviour checks) once the RPC is wired.
 *   (All 14 routes were wired by commit 43fc8e8; every row is "full" now.)
 */
export type Coverage = "full" | "reachable";

/** Who the sample request should be sent as. */
export type Actor = "owner" | "admin";

export interface RouteRow extends HttpRule {
  /** Row number in spec section 2. */
  n: number;
  service: "AccountBalanceService" | "AccountBalanceAdminService";
  rpc: string;
  actor: Actor;
  coverage: Coverage;
  /** Opening balance of the owner's balance the sample runs against (default 0). */
  fundedWith?: number;
  /** A valid request, given an existing balance of the owner and the owner's user id. */
  sample(ctx: { balanceId: string; userId: string }): JsonObject;
}

export const ROUTES: readonly RouteRow[] = [
  { n: 1, service: "AccountBalanceService", rpc: "ListMyBalances", http: "GET", path: "/me/balances", actor: "owner", coverage: "full",
    sample: () => ({ limit: 10, currency: "EUR" }) },
  { n: 2, service: "AccountBalanceService", rpc: "GetMyTotalBalance", http: "GET", path: "/me/total", actor: "owner", coverage: "full",
    sample: () => ({ currency: "EUR" }) },
  { n: 3, service: "AccountBalanceService", rpc: "ListMyTransactions", http: "GET", path: "/me/transactions", actor: "owner", coverage: "full",
    sample: () => ({ limit: 5, transaction_type: "credit" }) },
  { n: 4, service: "AccountBalanceService", rpc: "GetBalance", http: "GET", path: "/{id}", actor: "owner", coverage: "full",
    sample: ({ balanceId }) => ({ id: balanceId }) },
  { n: 5, service: "AccountBalanceService", rpc: "CreateBalance", http: "POST", path: "/", actor: "owner", coverage: "full",
    sample: () => ({ balance_type: "promotional", currency: "EUR" }) },
  { n: 6, service: "AccountBalanceService", rpc: "UpdateBalance", http: "PUT", path: "/{id}", actor: "owner", coverage: "full",
    sample: ({ balanceId }) => ({ id: balanceId, metadata: { touched: "yes" } }) },
  { n: 7, service: "AccountBalanceService", rpc: "CloseBalance", http: "DELETE", path: "/{id}", actor: "owner", coverage: "full",
    sample: ({ balanceId }) => ({ id: balanceId }) },
  { n: 8, service: "AccountBalanceService", rpc: "CreditBalance", http: "POST", path: "/{id}/credit", actor: "admin", coverage: "full",
    sample: ({ balanceId }) => ({ id: balanceId, amount_cents: 500, description: "top up" }) },
  { n: 9, service: "AccountBalanceService", rpc: "DebitBalance", http: "POST", path: "/{id}/debit", actor: "owner", coverage: "full", fundedWith: 100,
    sample: ({ balanceId }) => ({ id: balanceId, amount_cents: 1, description: "spend" }) },
  { n: 10, service: "AccountBalanceService", rpc: "ListBalanceTransactions", http: "GET", path: "/{id}/transactions", actor: "owner", coverage: "full",
    sample: ({ balanceId }) => ({ id: balanceId, limit: 5 }) },
  { n: 11, service: "AccountBalanceService", rpc: "GetBalanceStatistics", http: "GET", path: "/{id}/statistics", actor: "owner", coverage: "full",
    sample: ({ balanceId }) => ({ id: balanceId }) },
  { n: 12, service: "AccountBalanceAdminService", rpc: "ListUserBalances", http: "GET", path: "/users/{user_id}/balances", actor: "admin", coverage: "full",
    sample: ({ userId }) => ({ user_id: userId, limit: 10 }) },
  { n: 13, service: "AccountBalanceAdminService", rpc: "GetUserTotalBalance", http: "GET", path: "/users/{user_id}/total", actor: "admin", coverage: "full",
    sample: ({ userId }) => ({ user_id: userId, currency: "EUR" }) },
  { n: 14, service: "AccountBalanceAdminService", rpc: "ListExpiringBalances", http: "GET", path: "/expiring", actor: "admin", coverage: "full",
    sample: () => ({ within_days: 30, limit: 10 }) },
];

/** RPC name -> REST rule, for createApi. */
export const HTTP_RULES: Record<string, HttpRule> = Object.fromEntries(ROUTES.map((r) => [r.rpc, { http: r.http, path: r.path }]));
