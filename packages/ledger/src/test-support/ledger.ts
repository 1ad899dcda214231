import { expect } from "vitest";
import { LedgerError, type CreateBalanceInput } from "../index.js";
import { sql } from "./sql.js";

/** The LedgerError a promise rejects with (fails the test if it resolves or throws anything else). */
export async function refusal(promise: Promise<unknown>): Promise<LedgerError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(LedgerError);
    return err as LedgerError;
  }
  throw new Error("expected a LedgerError");
}

export const balanceInput = (overrides: Partial<CreateBalanceInput> = {}): CreateBalanceInput => ({
  userId: "user-1",
  balanceType: "general",
  balanceCents: 0n,
  currency: "USD",
  status: "active",
  metadata: {},
  ...overrides,
});

export interface TxnRow {
  id: string;
  transaction_type: string;
  amount_cents: string;
  balance_before_cents: string;
  balance_after_cents: string;
  sequence: string;
  currency: string;
  user_id: string;
}

export const transactionsOf = (url: string, balanceId: string) =>
  sql<TxnRow>(
    url,
    `select id, transaction_type, amount_cents, balance_before_cents, balance_after_cents, sequence, currency, user_id
       from account_transactions where account_balance_id = $1 order by sequence`,
    [balanceId],
  );

export interface BalanceRow {
  balance_cents: string;
  version: string;
  last_sequence: string;
  status: string;
  updated_at: Date;
}

export async function balanceRowOf(url: string, id: string): Promise<BalanceRow | undefined> {
  const rows = await sql<BalanceRow>(
    url,
    "select balance_cents, version, last_sequence, status, updated_at from account_balances where id = $1",
    [id],
  );
  return rows[0];
}

/** Everything a refused movement must leave untouched. */
export async function snapshotOf(url: string, id: string) {
  return {
    balance: await balanceRowOf(url, id),
    transactions: await transactionsOf(url, id),
    keys: await sql(url, "select scope, key, fingerprint, operation, status from idempotency_keys order by scope, key"),
  };
}
