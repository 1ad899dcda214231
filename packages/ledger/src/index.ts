export { openLedger, migrate, DEFAULT_DATA_DIR } from "./ledger.js";
export type { Ledger, OpenLedgerOptions, Readiness } from "./ledger.js";
export { LedgerError, type Reason } from "./errors.js";
export type {
  Balances,
  BalanceFilter,
  CreateBalanceInput,
  OwnerScope,
  Page,
  PageRequest,
  UpdateBalancePatch,
} from "./balances.js";
export { MAX_PAGE_LIMIT } from "./balances.js";
export type { Sessions, MintSessionInput, MintedSession, SessionUser } from "./sessions.js";
export { hashSessionToken } from "./sessions.js";
export {
  AccountBalance,
  AccountTransaction,
  Session,
  type AccountBalanceRecord,
  type AccountTransactionRecord,
  type SessionRow,
} from "./entities/index.js";
export {
  BALANCE_TYPES,
  BALANCE_STATUSES,
  TRANSACTION_TYPES,
  MAX_CENTS,
  isKnownCurrency,
  type BalanceType,
  type BalanceStatus,
  type TransactionType,
} from "./domain.js";
export { toLedgerError } from "./db-errors.js";
export { migrationsList } from "./migrations/index.js";
export type { LedgerOrm, LedgerEntityManager } from "./orm.js";
