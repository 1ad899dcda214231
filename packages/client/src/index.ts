/**
 * @account-balance/client: typed clients of the account-balance API.
 * Node: `@account-balance/client/node`; browsers: `@account-balance/client/web`; any Connect
 * transport: `createAccountBalanceClient` here. Generated messages and enums are re-exported
 * below; every file of the contract is also at `@account-balance/client/gen/...`.
 */
export {
  createAccountBalanceClient,
  type AccountBalanceClients,
  type AccountBalanceServiceClient,
  type AccountBalanceAdminServiceClient,
  type AccountBalanceCallOptions,
  type ClientOptions,
  type TypedClient,
} from "./client.js";
export { AccountBalanceError, isAccountBalanceError, ERROR_DOMAIN, type ErrorDetails } from "./errors.js";
export { REASONS, isReason, type Reason } from "./reasons.js";
export { authHeaders, createAuthInterceptor, type Auth } from "./auth.js";
export { DEFAULT_RETRY, type RetryOptions } from "./retry.js";
export { newIdempotencyKey } from "./idempotency-key.js";
export { Code } from "@connectrpc/connect";
export * from "./gen/accountbalance/v1/records_pb.js";
export * from "./gen/accountbalance/v1/account_balance_service_pb.js";
export * from "./gen/accountbalance/v1/account_balance_admin_service_pb.js";
