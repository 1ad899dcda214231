import { BALANCE_STATUSES, BALANCE_TYPES, type BalanceStatus } from "./domain.js";
import type { AccountBalanceRecord } from "./entities/account-balance.entity.js";
import type { BalanceFilter } from "./balances.js";
import type { Query } from "./reads.js";
import { balanceFromRow, balanceRow } from "./records.js";
import { requireCurrency, requireNonEmpty, requireOneOf, requireText } from "./validate.js";

// "A balance past expires_at is expired even before the sweeper runs" (the spec). The sweeper
// stores `expired`, with its expiration transaction, on its next run; until then every read
// calls an `active` balance past its time `expired`, by the database's clock as the movements'
// own check does, so that a record, a status filter and a refused debit never disagree.

/** True for a row stored `active` whose `expires_at` has passed. */
export const LAPSED_SQL = "(status = 'active' and expires_at <= now())";
const SPENDABLE_SQL = "status = 'active' and (expires_at is null or expires_at > now())";

function statusCondition(status: BalanceStatus): Query {
  if (status === "active") return { sql: SPENDABLE_SQL, params: [] };
  if (status === "expired") return { sql: `(status = 'expired' or ${LAPSED_SQL})`, params: [] };
  return { sql: "status = ?", params: [status] };
}

/**
 * WHERE clause of a balance filter (columns unqualified). A `status` is the status a reader
 * sees; without one, `unfiltered` says which balances count: only the ones that can still move
 * money (totals) or all of them (lists).
 */
export function balanceWhere(filter: BalanceFilter, unfiltered: "spendable" | "all"): Query {
  const where: string[] = ["user_id = ?"];
  const params: unknown[] = [requireNonEmpty(filter.userId, "user_id")];
  const add = (q: Query) => {
    where.push(q.sql);
    params.push(...q.params);
  };
  if (filter.referenceCode !== undefined) add({ sql: "reference_code = ?", params: [requireText(filter.referenceCode, "reference_code")] });
  if (filter.balanceType !== undefined) add({ sql: "balance_type = ?", params: [requireOneOf(filter.balanceType, BALANCE_TYPES, "balance_type")] });
  if (filter.organizationId !== undefined) add({ sql: "organization_id = ?", params: [requireText(filter.organizationId, "organization_id")] });
  if (filter.projectId !== undefined) add({ sql: "project_id = ?", params: [requireText(filter.projectId, "project_id")] });
  if (filter.currency !== undefined) add({ sql: "currency = ?", params: [requireCurrency(filter.currency)] });
  if (filter.status !== undefined) add(statusCondition(requireOneOf(filter.status, BALANCE_STATUSES, "status")));
  else if (unfiltered === "spendable") add({ sql: SPENDABLE_SQL, params: [] });
  return { sql: where.join(" and "), params };
}

/** A page of a user's balances and their count (`balances.list`); served by account_balances_user_created_idx. */
export function balanceListQueries(filter: BalanceFilter, page: { limit: number; offset: number }): { items: Query; total: Query } {
  const where = balanceWhere(filter, "all");
  return {
    items: {
      sql: `select *, ${LAPSED_SQL} as lapsed from account_balances where ${where.sql} order by created_at asc, id asc limit ? offset ?`,
      params: [...where.params, page.limit, page.offset],
    },
    total: { sql: `select count(*)::text as n from account_balances where ${where.sql}`, params: where.params },
  };
}

/** The record as a reader sees it at `clock` (the database's): `expired` once an active balance's time has passed. */
export function seenAt(balance: AccountBalanceRecord, clock: Date): AccountBalanceRecord {
  if (balance.status !== "active" || balance.expiresAt == null || balance.expiresAt > clock) return balance;
  return balanceFromRow({ ...balanceRow(balance), status: "expired" }, (v) => new Date(v as string));
}
