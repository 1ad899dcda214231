export { openLedger, migrate, sharedReadiness, DEFAULT_DATA_DIR } from "./ledger.js";
export type { Ledger, OpenLedgerOptions, Readiness } from "./ledger.js";
export { LedgerError, type Reason } from "./errors.js";
export type {
  Balances,
  BalanceFilter,
  CreateBalanceInput,
  IdempotencyOption,
  MutationOptions,
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
export type {
  Movements,
  CreditInput,
  DebitInput,
  MovementResult,
  MovementKind,
  MovementOutcome,
} from "./movements.js";
export type { BatchingOptions } from "./movement-batcher.js";
export { DEFAULT_MAX_BATCH, DEFAULT_MAX_IN_FLIGHT, DEFAULT_BATCH_LOCK_TIMEOUT_MS } from "./movement-batcher.js";
export type {
  Reads,
  TransactionScope,
  TransactionFilter,
  StatisticsWindow,
  BalanceTotal,
  CurrencyTotal,
  TypeTotal,
  BalanceStatistics,
  ExpiringFilter,
} from "./reads.js";
export { MAX_EXPIRING_DAYS } from "./reads.js";
export type { Idempotency, IdempotencyKey, IdempotencyCodec, Idempotent } from "./idempotency.js";
export { DEFAULT_IDEMPOTENCY_TTL_SECONDS } from "./idempotency.js";
export { startSweeper, DEFAULT_SWEEP_BATCH } from "./expiry.js";
export type { Expiry, SweepOptions, Sweeper, SweeperOptions } from "./expiry.js";
export type { Integrity, IntegrityProblem, IntegrityReport } from "./integrity.js";
