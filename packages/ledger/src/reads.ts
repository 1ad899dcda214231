import { BALANCE_TYPES, MAX_CENTS, TRANSACTION_TYPES, type BalanceType, type TransactionType } from "./domain.js";
import type { AccountBalanceRecord } from "./entities/account-balance.entity.js";
import type { AccountTransactionRecord } from "./entities/account-transaction.entity.js";
import { MAX_PAGE_LIMIT, type BalanceFilter, type OwnerScope, type Page, type PageRequest } from "./balances.js";
import { balanceWhere } from "./balance-filter.js";
import { LedgerError } from "./errors.js";
import { inSnapshot, runSql, type LedgerOrm } from "./orm.js";
import { ownedBalance } from "./ownership.js";
import { toBalanceRecord, toTransactionRecord, type RawRow } from "./records.js";
import {
  invalid,
  isUsableId,
  optionalDate,
  requireCurrency,
  requireNonEmpty,
  requireOneOf,
  requirePositiveInt,
} from "./validate.js";

/** Whose transactions: one balance (NOT_FOUND unless visible to `ownerId`), or all of a user's. */
export type TransactionScope = { balanceId: string; ownerId?: string } | { userId: string; currency?: string };

export interface TransactionFilter {
  transactionType?: TransactionType;
  /** Inclusive lower bound on created_at. */
  from?: Date;
  /** Inclusive upper bound on created_at. */
  to?: Date;
}

export interface StatisticsWindow {
  /** Inclusive. */
  from?: Date;
  /** Inclusive. */
  to?: Date;
}

export interface CurrencyTotal {
  currency: string;
  totalBalanceCents: bigint;
  balanceCount: bigint;
}

export interface TypeTotal {
  balanceType: BalanceType;
  currency: string;
  totalBalanceCents: bigint;
  balanceCount: bigint;
}

export interface BalanceTotal {
  /** The filter's currency, else the currency holding the most balances (tie: alphabetical), else USD. */
  currency: string;
  /** Sum over the balances in `currency` only: currencies are never added together. */
  totalBalanceCents: bigint;
  balanceCount: bigint;
  byCurrency: CurrencyTotal[];
  byType: TypeTotal[];
}

/**
 * Credits are `credit` transactions; debits are `debit` and `expiration` transactions (money
 * leaving the balance). Adjustments and transfers count in transaction_count and
 * net_change only. net_change is the sum of (after - before) over the window.
 */
export interface BalanceStatistics {
  balanceId: string;
  currency: string;
  currentBalanceCents: bigint;
  totalCreditsCents: bigint;
  totalDebitsCents: bigint;
  netChangeCents: bigint;
  creditCount: bigint;
  debitCount: bigint;
  transactionCount: bigint;
  /** Rounded to the nearest minor unit (half up); 0 without any. */
  averageCreditCents: bigint;
  averageDebitCents: bigint;
  largestCreditCents: bigint;
  largestDebitCents: bigint;
  firstTransactionAt: Date | null;
  lastTransactionAt: Date | null;
}

export interface ExpiringFilter {
  /** Expiring after now and at most this many days from now: 1 … 36500. */
  withinDays: number;
  currency?: string;
  balanceType?: BalanceType;
}

export interface Reads {
  /** Newest first (created_at, then sequence, descending). */
  listTransactions(
    scope: TransactionScope,
    filter: TransactionFilter,
    page: PageRequest,
  ): Promise<Page<AccountTransactionRecord>>;
  /** By default only active, unexpired balances count; a `status` filter (the status as read) replaces that rule. */
  totals(filter: BalanceFilter): Promise<BalanceTotal>;
  statistics(balanceId: string, window: StatisticsWindow, opts?: OwnerScope): Promise<BalanceStatistics>;
  /** Active balances with a positive amount that expire within the window, soonest first. */
  listExpiring(filter: ExpiringFilter, page: PageRequest): Promise<Page<AccountBalanceRecord>>;
}

export const MAX_EXPIRING_DAYS = 36_500;

/** A statement and its bindings (knex `?` placeholders). */
export interface Query {
  sql: string;
  params: unknown[];
}

const notFound = () => new LedgerError("NOT_FOUND", "balance not found");

function checkPage(page: PageRequest): { limit: number; offset: number } {
  const limit = requirePositiveInt(page?.limit, "limit", MAX_PAGE_LIMIT);
  const pageNo = requirePositiveInt(page?.page, "page");
  return { limit, offset: (pageNo - 1) * limit };
}

function checkWindow(from: unknown, to: unknown): { from: Date | undefined; to: Date | undefined } {
  const f = optionalDate(from, "from");
  const t = optionalDate(to, "to");
  if (f && t && f.getTime() > t.getTime()) throw invalid("from must not be after to", "from");
  return { from: f, to: t };
}

// ---- the statements (exported for the query-plan tests, not from the package) ----

/** The page and the total of a transaction listing. Both run on an index (see docs/query-plans.md). */
export function transactionQueries(
  scope: TransactionScope,
  filter: TransactionFilter,
  page: { limit: number; offset: number },
): { items: Query; total: Query } {
  const where: string[] = [];
  const params: unknown[] = [];
  let order: string;
  if ("balanceId" in scope) {
    // account_transactions_history_idx (account_balance_id, created_at desc, sequence desc)
    where.push("account_balance_id = ?");
    params.push(scope.balanceId);
    order = "created_at desc, sequence desc";
  } else {
    // account_transactions_user_history_idx (user_id, created_at desc, sequence desc, id desc)
    where.push("user_id = ?");
    params.push(scope.userId);
    if (scope.currency !== undefined) {
      where.push("currency = ?");
      params.push(scope.currency);
    }
    order = "created_at desc, sequence desc, id desc";
  }
  if (filter.transactionType !== undefined) {
    where.push("transaction_type = ?");
    params.push(filter.transactionType);
  }
  if (filter.from !== undefined) {
    where.push("created_at >= ?");
    params.push(filter.from);
  }
  if (filter.to !== undefined) {
    where.push("created_at <= ?");
    params.push(filter.to);
  }
  const cond = where.join(" and ");
  return {
    items: {
      sql: `select * from account_transactions where ${cond} order by ${order} limit ? offset ?`,
      params: [...params, page.limit, page.offset],
    },
    total: { sql: `select count(*) as n from account_transactions where ${cond}`, params },
  };
}

/** Sums per currency and type; served by account_balances_user_created_idx (user_id, …). */
export function totalsQuery(filter: BalanceFilter): Query {
  const where = balanceWhere(filter, "spendable");
  return {
    sql: `select currency, balance_type, sum(balance_cents)::text as total, count(*)::text as n
            from account_balances where ${where.sql}
           group by currency, balance_type`,
    params: where.params,
  };
}

export function statisticsQuery(balanceId: string, window: StatisticsWindow, ownerId: string | undefined): Query {
  const inner: string[] = ["t.account_balance_id = b.id"];
  const innerParams: unknown[] = [];
  if (window.from !== undefined) {
    inner.push("t.created_at >= ?");
    innerParams.push(window.from);
  }
  if (window.to !== undefined) {
    inner.push("t.created_at <= ?");
    innerParams.push(window.to);
  }
  const credit = "t.transaction_type = 'credit'";
  const debit = "t.transaction_type in ('debit', 'expiration')";
  const owned = ownedBalance(balanceId, ownerId, "b");
  const epochMs = (e: string) => `(extract(epoch from ${e}) * 1000)::bigint::text`;
  // One statement: the current balance and the aggregates come from the same snapshot.
  return {
    sql: `select b.id, b.currency, b.balance_cents, s.*
            from account_balances b
           cross join lateral (
             select count(*)::text as transaction_count,
                    count(*) filter (where ${credit})::text as credit_count,
                    count(*) filter (where ${debit})::text as debit_count,
                    coalesce(sum(t.amount_cents) filter (where ${credit}), 0)::text as total_credits,
                    coalesce(sum(t.amount_cents) filter (where ${debit}), 0)::text as total_debits,
                    coalesce(sum(t.balance_after_cents - t.balance_before_cents), 0)::text as net_change,
                    coalesce(round(avg(t.amount_cents) filter (where ${credit})), 0)::text as average_credit,
                    coalesce(round(avg(t.amount_cents) filter (where ${debit})), 0)::text as average_debit,
                    coalesce(max(t.amount_cents) filter (where ${credit}), 0)::text as largest_credit,
                    coalesce(max(t.amount_cents) filter (where ${debit}), 0)::text as largest_debit,
                    ${epochMs("min(t.created_at)")} as first_at,
                    ${epochMs("max(t.created_at)")} as last_at
               from account_transactions t
              where ${inner.join(" and ")}
           ) s
           where ${owned.sql}`,
    params: [...innerParams, ...owned.params],
  };
}

/** Served by account_balances_expiring_idx (expires_at, id) where status = 'active' and expires_at is not null. */
export function expiringQueries(
  filter: { withinDays: number; currency?: string; balanceType?: string },
  page: { limit: number; offset: number },
): { items: Query; total: Query } {
  const where = [
    "status = 'active'",
    "expires_at is not null",
    "expires_at > now()",
    "expires_at <= now() + make_interval(days => ?)",
    "balance_cents > 0",
  ];
  const params: unknown[] = [filter.withinDays];
  if (filter.currency !== undefined) {
    where.push("currency = ?");
    params.push(filter.currency);
  }
  if (filter.balanceType !== undefined) {
    where.push("balance_type = ?");
    params.push(filter.balanceType);
  }
  const cond = where.join(" and ");
  return {
    items: {
      sql: `select * from account_balances where ${cond} order by expires_at asc, id asc limit ? offset ?`,
      params: [...params, page.limit, page.offset],
    },
    total: { sql: `select count(*) as n from account_balances where ${cond}`, params },
  };
}

// ---- the operations ----

interface TotalRow {
  currency: string;
  balance_type: BalanceType;
  total: string;
  n: string;
}

interface StatisticsRow {
  id: string;
  currency: string;
  balance_cents: string;
  transaction_count: string;
  credit_count: string;
  debit_count: string;
  total_credits: string;
  total_debits: string;
  net_change: string;
  average_credit: string;
  average_debit: string;
  largest_credit: string;
  largest_debit: string;
  first_at: string | null;
  last_at: string | null;
}

export function createReads(orm: LedgerOrm): Reads {
  async function listTransactions(
    scope: TransactionScope,
    filter: TransactionFilter,
    page: PageRequest,
  ): Promise<Page<AccountTransactionRecord>> {
    const p = checkPage(page);
    const { from, to } = checkWindow(filter?.from, filter?.to);
    const transactionType =
      filter?.transactionType === undefined
        ? undefined
        : requireOneOf(filter.transactionType, TRANSACTION_TYPES, "transaction_type");
    let checked: TransactionScope;
    if (scope && "balanceId" in scope) {
      // An unusable id or owner names no balance: NOT_FOUND below.
      const usable = isUsableId(scope.balanceId) && (scope.ownerId === undefined || isUsableId(scope.ownerId));
      checked = { balanceId: usable ? scope.balanceId : "" };
      if (scope.ownerId !== undefined) checked.ownerId = scope.ownerId;
    } else {
      checked = { userId: requireNonEmpty(scope?.userId, "user_id") };
      if (scope.currency !== undefined) checked.currency = requireCurrency(scope.currency);
    }
    const q = transactionQueries(
      checked,
      { ...(transactionType ? { transactionType } : {}), ...(from ? { from } : {}), ...(to ? { to } : {}) },
      p,
    );

    const unfiltered = transactionType === undefined && from === undefined && to === undefined;
    return inSnapshot(orm, async (em) => {
      // A balance's transactions are numbered 1..last_sequence without gaps (the chain), so
      // an unfiltered history's total is last_sequence: no count(*) over a long history.
      let knownTotal: number | undefined;
      if ("balanceId" in checked) {
        if (checked.balanceId === "") throw notFound();
        const owned = ownedBalance(checked.balanceId, checked.ownerId);
        const visible = (await runSql(em, `select last_sequence from account_balances where ${owned.sql}`, owned.params)) as Array<{
          last_sequence: string;
        }>;
        if (visible.length === 0) throw notFound();
        if (unfiltered) knownTotal = Number(visible[0]!.last_sequence);
      }
      const rows = (await runSql(em, q.items.sql, q.items.params)) as RawRow[];
      if (knownTotal !== undefined) return { items: rows.map((r) => toTransactionRecord(em, r)), total: knownTotal };
      const [count] = (await runSql(em, q.total.sql, q.total.params)) as Array<{ n: string }>;
      return { items: rows.map((r) => toTransactionRecord(em, r)), total: Number(count?.n ?? 0) };
    });
  }

  async function totals(filter: BalanceFilter): Promise<BalanceTotal> {
    const q = totalsQuery(filter);
    const rows = await inSnapshot(orm, (em) => runSql(em, q.sql, q.params) as Promise<TotalRow[]>);

    const byCurrencyMap = new Map<string, CurrencyTotal>();
    const byType: TypeTotal[] = [];
    for (const r of rows) {
      const total = BigInt(r.total);
      const n = BigInt(r.n);
      byType.push({ balanceType: r.balance_type, currency: r.currency, totalBalanceCents: total, balanceCount: n });
      const c = byCurrencyMap.get(r.currency) ?? { currency: r.currency, totalBalanceCents: 0n, balanceCount: 0n };
      c.totalBalanceCents += total;
      c.balanceCount += n;
      byCurrencyMap.set(r.currency, c);
    }
    const byCurrency = [...byCurrencyMap.values()].sort((a, b) => (a.currency < b.currency ? -1 : a.currency > b.currency ? 1 : 0));
    byType.sort((a, b) =>
      a.currency !== b.currency
        ? a.currency < b.currency ? -1 : 1
        : BALANCE_TYPES.indexOf(a.balanceType) - BALANCE_TYPES.indexOf(b.balanceType),
    );

    let currency = filter.currency;
    if (currency === undefined) {
      // The most balances wins; byCurrency is alphabetical, so the first of a tie is kept.
      let best: CurrencyTotal | undefined;
      for (const c of byCurrency) if (!best || c.balanceCount > best.balanceCount) best = c;
      currency = best?.currency ?? "USD";
    }
    for (const t of [...byType, ...byCurrency]) reportable(t.totalBalanceCents, "the total of these balances", "a currency or balance_type filter");
    const main = byCurrencyMap.get(currency);
    return {
      currency,
      totalBalanceCents: main?.totalBalanceCents ?? 0n,
      balanceCount: main?.balanceCount ?? 0n,
      byCurrency,
      byType,
    };
  }

  async function statistics(balanceId: string, window: StatisticsWindow, opts?: OwnerScope): Promise<BalanceStatistics> {
    const { from, to } = checkWindow(window?.from, window?.to);
    if (!isUsableId(balanceId) || (opts?.ownerId !== undefined && !isUsableId(opts.ownerId))) throw notFound();
    const q = statisticsQuery(balanceId, { ...(from ? { from } : {}), ...(to ? { to } : {}) }, opts?.ownerId);
    const [r] = await inSnapshot(orm, (em) => runSql(em, q.sql, q.params) as Promise<StatisticsRow[]>);
    if (!r) throw notFound();
    for (const sum of [r.total_credits, r.total_debits, r.net_change]) reportable(BigInt(sum), "a sum of this history", "a from/to window");
    return {
      balanceId: r.id,
      currency: r.currency,
      currentBalanceCents: BigInt(r.balance_cents),
      totalCreditsCents: BigInt(r.total_credits),
      totalDebitsCents: BigInt(r.total_debits),
      netChangeCents: BigInt(r.net_change),
      creditCount: BigInt(r.credit_count),
      debitCount: BigInt(r.debit_count),
      transactionCount: BigInt(r.transaction_count),
      averageCreditCents: BigInt(r.average_credit),
      averageDebitCents: BigInt(r.average_debit),
      largestCreditCents: BigInt(r.largest_credit),
      largestDebitCents: BigInt(r.largest_debit),
      firstTransactionAt: r.first_at === null ? null : new Date(Number(r.first_at)),
      lastTransactionAt: r.last_at === null ? null : new Date(Number(r.last_at)),
    };
  }

  async function listExpiring(filter: ExpiringFilter, page: PageRequest): Promise<Page<AccountBalanceRecord>> {
    const p = checkPage(page);
    const withinDays = requirePositiveInt(filter?.withinDays, "within_days", MAX_EXPIRING_DAYS);
    const f: { withinDays: number; currency?: string; balanceType?: string } = { withinDays };
    if (filter.currency !== undefined) f.currency = requireCurrency(filter.currency);
    if (filter.balanceType !== undefined) f.balanceType = requireOneOf(filter.balanceType, BALANCE_TYPES, "balance_type");
    const q = expiringQueries(f, p);
    return inSnapshot(orm, async (em) => {
      const rows = (await runSql(em, q.items.sql, q.items.params)) as RawRow[];
      const [count] = (await runSql(em, q.total.sql, q.total.params)) as Array<{ n: string }>;
      return { items: rows.map((r) => toBalanceRecord(em, r)), total: Number(count?.n ?? 0) };
    });
  }

  return { listTransactions, totals, statistics, listExpiring };
}

/**
 * A sum of amounts as the contract can carry it. Each amount and balance stays within
 * ±(2^53-1), so JSON clients read it exactly, but a sum over many need not: beyond that it
 * would reach JSON callers as a string (or, past int64, not encode at all), so it is refused
 * with a way to ask for less.
 */
function reportable(sum: bigint, what: string, narrower: string): void {
  if (sum > MAX_CENTS || sum < -MAX_CENTS) {
    throw new LedgerError("AMOUNT_OUT_OF_RANGE", `${what} is outside ±${MAX_CENTS} cents and cannot be reported; ask for less with ${narrower}`, {
      max_cents: MAX_CENTS.toString(),
    });
  }
}
