import { LockMode } from "@mikro-orm/core";
import {
  BALANCE_STATUSES,
  BALANCE_TYPES,
  MAX_CENTS,
  type BalanceStatus,
  type BalanceType,
} from "./domain.js";
import { balanceListQueries, LAPSED_SQL, seenAt } from "./balance-filter.js";
import { AccountBalance, type AccountBalanceRecord } from "./entities/account-balance.entity.js";
import { AccountTransaction } from "./entities/account-transaction.entity.js";
import { LedgerError } from "./errors.js";
import { newBalanceId, newTransactionId } from "./ids.js";
import { requireIdempotencyKey, type Idempotency, type IdempotencyCodec, type IdempotencyKey } from "./idempotency.js";
import { inFork, inSnapshot, inTransaction, limitLockWaits, runSql, type LedgerEntityManager, type LedgerOrm } from "./orm.js";
import { ownedBalance, ownedBalanceFilter } from "./ownership.js";
import { balanceRow, toBalanceRecord, type RawRow } from "./records.js";
import {
  invalid,
  optionalString,
  requireDate,
  requireMetadata,
  requireNonEmpty,
  requireOneOf,
  isUsableId,
  requireCurrency,
  requirePositiveInt,
} from "./validate.js";

export interface CreateBalanceInput {
  userId: string;
  organizationId?: string | null;
  projectId?: string | null;
  customerId?: string | null;
  balanceType: BalanceType;
  /** Opening balance in minor units; a non-zero value is recorded as an `adjustment` transaction. */
  balanceCents: bigint;
  currency: string;
  referenceCode?: string | null;
  expiresAt?: Date | null;
  status: BalanceStatus;
  metadata: Record<string, string>;
}

export interface BalanceFilter {
  userId: string;
  referenceCode?: string;
  balanceType?: BalanceType;
  status?: BalanceStatus;
  organizationId?: string;
  projectId?: string;
  currency?: string;
}

export interface PageRequest {
  /** 1 … 1000. */
  limit: number;
  /** 1-based. */
  page: number;
}

export interface Page<T> {
  items: T[];
  total: number;
}

export interface UpdateBalancePatch {
  status?: BalanceStatus;
  /** A Date sets the expiry, null clears it, undefined leaves it. */
  expiresAt?: Date | null;
  /** Replaces the whole metadata object. */
  metadata?: Record<string, string>;
}

/** `ownerId` restricts the operation to balances of that user; anyone else's balance is "not found". */
export interface OwnerScope {
  ownerId?: string;
}

/** An idempotency key makes a repeated call return the first call's balance (spec section 6). */
export interface IdempotencyOption {
  idempotency?: IdempotencyKey;
}

export interface MutationOptions extends OwnerScope, IdempotencyOption {
  /**
   * The caller may change metadata only (an owner, in the spec's table): a status or expiry
   * that would change is FORBIDDEN, one equal to the balance's is accepted (a client that
   * sends the record back with new metadata). Checked under the row lock.
   */
  metadataOnly?: boolean;
}

export interface Balances {
  create(input: CreateBalanceInput, opts?: IdempotencyOption): Promise<AccountBalanceRecord>;
  get(id: string, opts?: OwnerScope): Promise<AccountBalanceRecord | null>;
  list(filter: BalanceFilter, page: PageRequest): Promise<Page<AccountBalanceRecord>>;
  update(id: string, patch: UpdateBalancePatch, opts?: MutationOptions): Promise<AccountBalanceRecord>;
  close(id: string, opts?: MutationOptions): Promise<AccountBalanceRecord>;
}

const balanceCodec: IdempotencyCodec<AccountBalanceRecord> = {
  encode: (b) => balanceRow(b),
  decode: (stored, em) => toBalanceRecord(em, stored as RawRow),
};

export const MAX_PAGE_LIMIT = 1000;

function notFound(): LedgerError {
  return new LedgerError("NOT_FOUND", "balance not found");
}

/**
 * Money in an `expired` balance could never move again, and no transaction would say where it
 * went: expiry takes a positive balance to zero with an `expiration` transaction, which only
 * the sweeper writes. To expire a balance that holds money, set `expires_at`.
 */
function expiredWithMoney(cents: bigint): LedgerError {
  return new LedgerError(
    "BALANCE_NOT_EMPTY",
    "a balance holding money cannot be set expired by hand: set expires_at, and the sweeper's expiration transaction takes it to zero",
    { balance_cents: cents.toString() },
  );
}

function sameMetadata(a: Record<string, string>, b: Record<string, string>): boolean {
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => Object.hasOwn(b, k) && a[k] === b[k]);
}

export function createBalances(orm: LedgerOrm, idempotency: Idempotency, settings: { lockTimeoutMs?: number } = {}): Balances {
  async function create(input: CreateBalanceInput, opts?: IdempotencyOption): Promise<AccountBalanceRecord> {
    const userId = requireNonEmpty(input.userId, "user_id");
    const balanceType = requireOneOf(input.balanceType, BALANCE_TYPES, "balance_type");
    const status = requireOneOf(input.status, BALANCE_STATUSES, "status");
    const currency = requireCurrency(input.currency);
    const metadata = requireMetadata(input.metadata);
    const expiresAt = input.expiresAt == null ? null : requireDate(input.expiresAt, "expires_at");
    const opening = input.balanceCents;
    if (typeof opening !== "bigint") throw invalid("balance_cents must be an integer", "balance_cents");
    if (opening < 0n) throw invalid("balance_cents must not be negative", "balance_cents");
    if (opening > MAX_CENTS) {
      throw new LedgerError("AMOUNT_OUT_OF_RANGE", "balance_cents is above 9007199254740991", {
        max_cents: MAX_CENTS.toString(),
      });
    }
    if (status === "closed" && opening !== 0n) {
      throw new LedgerError("BALANCE_NOT_EMPTY", "a closed balance must have a zero balance", {
        balance_cents: opening.toString(),
      });
    }
    if (status === "expired" && opening > 0n) throw expiredWithMoney(opening);

    const key = requireIdempotencyKey(opts?.idempotency);

    return inTransaction(orm, async (em) => {
      // A second call with a key whose first is still running waits as long as update does.
      await limitLockWaits(em, settings.lockTimeoutMs);
      return (await idempotency.run(em, key, "create_balance", balanceCodec, async () => {
        const now = await databaseNow(em);
        const balance = em.create(AccountBalance, {
          id: newBalanceId(),
          userId,
          organizationId: optionalString(input.organizationId, "organization_id"),
          projectId: optionalString(input.projectId, "project_id"),
          customerId: optionalString(input.customerId, "customer_id"),
          balanceType,
          balanceCents: opening,
          currency,
          referenceCode: optionalString(input.referenceCode, "reference_code"),
          status,
          expiresAt,
          metadata,
          version: 1n,
          lastSequence: opening !== 0n ? 1n : 0n,
          createdAt: now,
          updatedAt: now,
        });
        if (opening !== 0n) {
          // The opening balance is money like any other: it enters through the ledger so the
          // transaction chain of this balance starts at 0 and ends at balance_cents.
          em.create(AccountTransaction, {
            id: newTransactionId(),
            accountBalanceId: balance.id,
            userId,
            transactionType: "adjustment",
            amountCents: opening,
            balanceBeforeCents: 0n,
            balanceAfterCents: opening,
            currency,
            description: "opening balance",
            referenceCode: balance.referenceCode ?? null,
            status: "completed",
            metadata: {},
            createdAt: now,
            sequence: 1n,
          });
        }
        await em.flush();
        return balance;
      })).value;
    });
  }

  async function get(id: string, opts?: OwnerScope): Promise<AccountBalanceRecord | null> {
    if (!isUsableId(id) || (opts?.ownerId !== undefined && !isUsableId(opts.ownerId))) return null;
    return inFork(orm, async (em) => {
      const where = ownedBalance(id, opts?.ownerId);
      const [row] = await runSql<RawRow>(em, `select *, ${LAPSED_SQL} as lapsed from account_balances where ${where.sql}`, where.params);
      return row ? toBalanceRecord(em, row) : null;
    });
  }

  async function list(filter: BalanceFilter, page: PageRequest): Promise<Page<AccountBalanceRecord>> {
    const limit = requirePositiveInt(page.limit, "limit", MAX_PAGE_LIMIT);
    const pageNo = requirePositiveInt(page.page, "page");
    const q = balanceListQueries(filter, { limit, offset: (pageNo - 1) * limit });
    return inSnapshot(orm, async (em) => {
      const rows = await runSql<RawRow>(em, q.items.sql, q.items.params);
      const [count] = await runSql<{ n: string }>(em, q.total.sql, q.total.params);
      return { items: rows.map((row) => toBalanceRecord(em, row)), total: Number(count!.n) };
    });
  }

  async function change(
    operation: string,
    id: string,
    patch: UpdateBalancePatch,
    opts?: MutationOptions,
  ): Promise<AccountBalanceRecord> {
    const status = patch.status === undefined ? undefined : requireOneOf(patch.status, BALANCE_STATUSES, "status");
    const expiresAt =
      patch.expiresAt === undefined ? undefined : patch.expiresAt === null ? null : requireDate(patch.expiresAt, "expires_at");
    const metadata = patch.metadata === undefined ? undefined : requireMetadata(patch.metadata);
    if (!isUsableId(id) || (opts?.ownerId !== undefined && !isUsableId(opts.ownerId))) throw notFound();
    const key = requireIdempotencyKey(opts?.idempotency);

    return inTransaction(orm, async (em) => {
      // A balance (or key) another transaction holds for long, a stuck session say, answers
      // UNAVAILABLE after about the ledger's lock timeout rather than holding this call and
      // its connection (and a shutdown) for as long.
      await limitLockWaits(em, settings.lockTimeoutMs);
      return (await idempotency.run(em, key, operation, balanceCodec, async () => {
        // The row lock orders this change after any in-flight credit or debit of the balance.
        const balance = await em.findOne(AccountBalance, ownedBalanceFilter(id, opts?.ownerId), { lockMode: LockMode.PESSIMISTIC_WRITE });
        if (!balance) throw notFound();
        // The database's clock, read once and only when needed: for a change's stamp, or to
        // tell whether an active balance with an expiry has lapsed.
        let clock: Date | undefined;
        const now = async (): Promise<Date> => (clock ??= await databaseNow(em));
        const statusChanges = status !== undefined && status !== balance.status;
        const expiryChanges = expiresAt !== undefined && (expiresAt?.getTime() ?? null) !== (balance.expiresAt?.getTime() ?? null);
        if (opts?.metadataOnly && (statusChanges || expiryChanges)) {
          throw new LedgerError("FORBIDDEN", "owners may change metadata only");
        }

        let changed = false;
        if (statusChanges) {
          if (balance.status === "closed") {
            throw new LedgerError("BALANCE_NOT_ACTIVE", "a closed balance cannot be reopened", { status: balance.status });
          }
          if (status === "closed" && balance.balanceCents !== 0n) {
            throw new LedgerError("BALANCE_NOT_EMPTY", "only a balance of zero can be closed", {
              balance_cents: balance.balanceCents.toString(),
            });
          }
          if (status === "expired" && balance.balanceCents > 0n) throw expiredWithMoney(balance.balanceCents);
          balance.status = status;
          changed = true;
        }
        if (expiryChanges) {
          balance.expiresAt = expiresAt;
          changed = true;
        }
        if (metadata !== undefined && !sameMetadata(metadata, balance.metadata)) {
          balance.metadata = metadata;
          changed = true;
        }
        if (changed) {
          balance.version = balance.version + 1n;
          // Never before its last change, whatever the clock did since.
          const stamp = await now();
          balance.updatedAt = stamp > balance.updatedAt ? stamp : balance.updatedAt;
          await em.flush();
        }
        return balance.status === "active" && balance.expiresAt != null ? seenAt(balance, await now()) : balance;
      })).value;
    });
  }

  const update = (id: string, patch: UpdateBalancePatch, opts?: MutationOptions): Promise<AccountBalanceRecord> =>
    change("update_balance", id, patch, opts);
  const close = (id: string, opts?: MutationOptions): Promise<AccountBalanceRecord> =>
    change("close_balance", id, { status: "closed" }, opts);

  return { create, get, list, update, close };
}

/**
 * The database's clock, in milliseconds: as for movements, the times the ledger writes are the
 * database's, whatever the clocks of the app servers say (a balance stamped by a server an hour
 * ahead would push its every later movement, which takes `greatest(clock, updated_at)`, an hour
 * into the future).
 */
async function databaseNow(em: LedgerEntityManager): Promise<Date> {
  const [row] = await runSql<{ ms: string }>(em, `select (extract(epoch from date_trunc('milliseconds', clock_timestamp())) * 1000)::bigint::text as ms`);
  return new Date(Number(row!.ms));
}
