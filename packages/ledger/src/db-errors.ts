import { LedgerError } from "./errors.js";

// Unique indexes whose violation is a caller-visible conflict rather than a bug.
const UNIQUE_REASONS: Record<string, { reason: "DUPLICATE_BALANCE"; message: string }> = {
  account_balances_reference_code_unique: {
    reason: "DUPLICATE_BALANCE",
    message: "a balance with this reference_code already exists for this user, currency and balance type",
  },
};

const CONNECTION_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EPIPE",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "57P01", // admin_shutdown
  "57P02", // crash_shutdown
  "57P03", // cannot_connect_now
  "53300", // too_many_connections
]);

interface DbErrorLike {
  code?: unknown;
  severity?: unknown;
  constraint?: unknown;
  name?: unknown;
  message?: unknown;
}

function fields(err: unknown): DbErrorLike {
  return typeof err === "object" && err !== null ? (err as DbErrorLike) : {};
}

/** Deadlock or serialization failure: the transaction may simply be run again. */
export function isRetryable(err: unknown): boolean {
  const { code } = fields(err);
  return code === "40001" || code === "40P01";
}

/** The SQLSTATE of an error PostgreSQL reported (it has a severity), if it is one. */
export function sqlState(err: unknown): string | undefined {
  const { code, severity } = fields(err);
  return typeof severity === "string" && typeof code === "string" && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

// Raised while a statement or COMMIT's deferred checks run, so before any commit record:
// data (22), integrity (23), syntax or schema (42), a conflict (40001, 40P01, 55P03), an
// exception raised by a trigger (P0001) or by a check such as the batch's (XX000).
const BEFORE_COMMIT = /^(22|23|42)...$|^(40001|40P01|55P03|P0001|XX000)$/;

/**
 * Whether a failure of a message that ended in COMMIT proves that nothing was committed:
 * only an ERROR of a kind that statements and deferred checks raise. A cancel (57014), a
 * termination (57P01) or a timeout can also reach the client after COMMIT took effect (the
 * server acts on them at its next check for interrupts, e.g. when it logs the statement's
 * duration), as can a lost connection or a reply the client could not read.
 */
export function refusedBeforeCommit(err: unknown): boolean {
  return fields(err).severity === "ERROR" && BEFORE_COMMIT.test(sqlState(err) ?? "");
}

/**
 * A COMMIT was sent and its outcome could not be learned: the reply was lost or unclear, and
 * the database could not say what became of the transaction. It may have taken effect, so
 * its work must be answered neither as done nor as refused, and never run again.
 */
export class CommitOutcomeUnknown extends Error {
  constructor(readonly failure: unknown) {
    super("the outcome of a COMMIT is unknown");
  }
}

/** What the caller of a write is told when its COMMIT's outcome is unknown. */
export const outcomeUnknown = (): LedgerError =>
  new LedgerError(
    "UNAVAILABLE",
    "the database did not confirm the write, which may have taken effect: retry with the same idempotency key, or read the history first",
  );

/**
 * What the caller of a movement is told when its balance (or its idempotency key) stayed
 * locked by another transaction past the lock timeout. Nothing was written.
 */
export const balanceHeld = (): LedgerError =>
  new LedgerError(
    "UNAVAILABLE",
    "the balance or the idempotency key is held by another transaction still running; nothing was written: retry later with the same idempotency key",
  );

/** A movement whose own lock wait ran past the lock timeout (55P03 from the database). */
export function isLockTimeout(err: LedgerError): boolean {
  return sqlState((err as { cause?: unknown }).cause) === "55P03";
}

/** A failure named for operators: the SQLSTATE class, never SQL or server text. */
export function failureKind(err: unknown): string {
  if (err instanceof CommitOutcomeUnknown) return failureKind(err.failure);
  if (err instanceof LedgerError) return err.reason;
  if (isPoolTimeout(err)) return "no free connection";
  if (isConnectionError(err)) return "connection lost";
  const code = sqlState(err);
  return code ? `SQLSTATE ${code}` : "unexpected error";
}

export function isConnectionError(err: unknown): boolean {
  const { code, name, message } = fields(err);
  if (typeof code === "string" && (CONNECTION_CODES.has(code) || code.startsWith("08"))) return true;
  if (name === "ConnectionException") return true;
  // knex ends a transaction whose connection broke between two statements; the next
  // statement then fails with "Transaction query already complete" (seen under
  // pg_terminate_backend and PostgreSQL restarts): an outage, not a bug.
  return (
    typeof message === "string" &&
    /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Transaction query already complete/i.test(
      message,
    )
  );
}

/**
 * No pool connection came free within knex's acquire timeout (many balances held for long):
 * knex's KnexTimeoutError, which MikroORM may wrap in a DriverException. Busy, not broken, and
 * not worth waiting for again: answered UNAVAILABLE at once, never retried.
 */
export function isPoolTimeout(err: unknown): boolean {
  const { name, message } = fields(err);
  return name === "KnexTimeoutError" || (typeof message === "string" && /Timeout acquiring a connection/i.test(message));
}

// undefined_table, undefined_column: the schema is not (yet) the one this code was built for.
const SCHEMA_BEHIND = new Set(["42P01", "42703"]);

/**
 * Turns any database failure into a LedgerError whose message is safe to show a caller:
 * never SQL, parameters or server text. The original error stays reachable (`withCause`).
 */
export function toLedgerError(err: unknown): LedgerError {
  if (err instanceof LedgerError) return err;
  const { code, constraint } = fields(err);
  let out: LedgerError;
  const unique = code === "23505" && typeof constraint === "string" ? UNIQUE_REASONS[constraint] : undefined;
  if (unique) {
    out = new LedgerError(unique.reason, unique.message);
  } else if (isPoolTimeout(err)) {
    out = new LedgerError("UNAVAILABLE", "every database connection is busy, try again later");
  } else if (isConnectionError(err)) {
    out = new LedgerError("UNAVAILABLE", "the database is unavailable, try again later");
  } else if (code === "55P03") {
    out = balanceHeld();
  } else if (typeof code === "string" && SCHEMA_BEHIND.has(code)) {
    // Opened without migrations (MIGRATE_ON_START=false) on a database that lacks them: an
    // operator's matter, answered like an outage (/readyz says the same), never INTERNAL.
    out = new LedgerError("UNAVAILABLE", "the database's tables are missing or older than this version: apply the migrations (pnpm migrate)");
  } else if (isRetryable(err)) {
    out = new LedgerError("UNAVAILABLE", "the operation conflicted with a concurrent one, try again");
  } else {
    out = new LedgerError("INTERNAL", "internal ledger error");
  }
  return withCause(out, err);
}

// The database exists and answers, but not for this URL: its name or its role is wrong.
const REFUSED_AT_CONNECT = new Set(["3D000", "28000", "28P01"]);

/**
 * A failure to open the ledger, for the operator who starts it: a wrong database name, role
 * or password keeps PostgreSQL's own sentence (`database "x" does not exist`, `password
 * authentication failed for user "y"`: names only, never the password), which "internal
 * ledger error" would hide; anything else as `toLedgerError`.
 */
export function openFailure(err: unknown): LedgerError {
  const state = sqlState(err);
  const message = (err as { message?: unknown } | undefined)?.message;
  if (state !== undefined && REFUSED_AT_CONNECT.has(state) && typeof message === "string" && message.length < 300 && !message.includes("\n")) {
    return withCause(new LedgerError("UNAVAILABLE", `the database refused the connection: ${message}`), err);
  }
  return toLedgerError(err);
}

/**
 * `out` with the original error as a non-enumerable `cause`, for debugging: serializers that
 * walk own enumerable properties do not copy it into logs or responses.
 */
export function withCause(out: LedgerError, err: unknown): LedgerError {
  Object.defineProperty(out, "cause", { value: err, enumerable: false, configurable: true, writable: true });
  return out;
}
