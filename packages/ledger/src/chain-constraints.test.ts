import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openLedger, type Ledger } from "./index.js";
import { createTestDatabase, type TestDatabase } from "./testing.js";
import { sql } from "./test-support/sql.js";
import { balanceInput, balanceRowOf, transactionsOf } from "./test-support/ledger.js";

// The chain of spec section 6 is a constraint of the schema (migration
// 20251128090000_chain_constraints): whatever writes to the database — the ledger, a script,
// a person with psql — a transaction that breaks the chain, or a balance that drifts from its
// history, is refused at COMMIT and nothing of that database transaction is written.

let db: TestDatabase;
let ledger: Ledger;

beforeAll(async () => {
  db = await createTestDatabase();
  ledger = await openLedger({ databaseUrl: db.url });
});

afterAll(async () => {
  await ledger?.close();
  await db?.drop();
});

interface Failure {
  /** "commit" when every statement ran and COMMIT was refused (a deferred check). */
  at: "statement" | "commit";
  code: string;
  constraint: string | undefined;
  message: string;
}

/** Runs the statements in one database transaction, as a client with psql would. */
async function inOneTransaction(statements: Array<[string, unknown[]?]>): Promise<Failure | null> {
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  let at: Failure["at"] = "statement";
  try {
    await client.query("begin");
    for (const [text, values] of statements) await client.query(text, values ?? []);
    at = "commit";
    await client.query("commit");
    return null;
  } catch (err) {
    await client.query("rollback").catch(() => {});
    const e = err as { code?: string; constraint?: string; message?: string };
    return { at, code: e.code ?? "", constraint: e.constraint, message: e.message ?? "" };
  } finally {
    await client.end();
  }
}

const insertTxn = (
  id: string,
  balanceId: string,
  type: string,
  amount: number,
  before: number,
  after: number,
  currency: string,
  sequence: number,
): [string, unknown[]] => [
  `insert into account_transactions (id, account_balance_id, transaction_type, amount_cents, balance_before_cents,
          balance_after_cents, currency, sequence)
   values ($1, $2, $3, $4, $5, $6, $7, $8)`,
  [id, balanceId, type, amount, before, after, currency, sequence],
];

const moveBalance = (balanceId: string, cents: number, lastSequence: number): [string, unknown[]] => [
  "update account_balances set balance_cents = $2, last_sequence = $3, version = version + 1 where id = $1",
  [balanceId, cents, lastSequence],
];

/** Balance and history as stored, to prove that a refused transaction wrote nothing. */
async function stateOf(balanceId: string) {
  return { balance: await balanceRowOf(db.url, balanceId), transactions: await transactionsOf(db.url, balanceId) };
}

describe("a transaction that breaks the chain is refused, nothing written", () => {
  // EUR 700 opened, then credited 50: sequences 1 (0 → 700) and 2 (700 → 750).
  let id: string;
  let before: Awaited<ReturnType<typeof stateOf>>;

  beforeAll(async () => {
    const b = await ledger.balances.create(balanceInput({ userId: "u-chain", balanceCents: 700n, currency: "EUR" }));
    await ledger.movements.credit({ balanceId: b.id, amountCents: 50n, metadata: {} });
    id = b.id;
    before = await stateOf(id);
    expect(before.balance).toMatchObject({ balance_cents: "750", last_sequence: "2" });
  });

  it("refuses a wrong balance_before_cents, even with the balance moved to match", async () => {
    const f = await inOneTransaction([insertTxn("txn_chain_before", id, "credit", 10, 740, 750, "EUR", 3), moveBalance(id, 750, 3)]);
    expect(f).toMatchObject({ at: "commit", code: "23514", constraint: "account_transactions_chain" });
    expect(f!.message).toMatch(/does not start where sequence 2 ended/);
    expect(await stateOf(id)).toEqual(before);
  });

  it("refuses a skipped sequence", async () => {
    const f = await inOneTransaction([insertTxn("txn_chain_gap", id, "credit", 10, 750, 760, "EUR", 4), moveBalance(id, 760, 4)]);
    expect(f).toMatchObject({ at: "commit", code: "23514", constraint: "account_transactions_chain" });
    expect(f!.message).toMatch(/sequence 4\) does not start where sequence 3 ended/);
    expect(await stateOf(id)).toEqual(before);
  });

  it("refuses a transaction in another currency than its balance", async () => {
    const f = await inOneTransaction([insertTxn("txn_chain_usd", id, "credit", 10, 750, 760, "USD", 3), moveBalance(id, 760, 3)]);
    expect(f).toMatchObject({ at: "commit", code: "23514", constraint: "account_transactions_chain" });
    expect(f!.message).toMatch(/is in USD, its balance in EUR/);
    expect(await stateOf(id)).toEqual(before);
  });

  it("refuses a first transaction that does not start at 0", async () => {
    const empty = await ledger.balances.create(balanceInput({ userId: "u-chain", currency: "EUR" }));
    const f = await inOneTransaction([insertTxn("txn_chain_first", empty.id, "credit", 5, 5, 10, "EUR", 1), moveBalance(empty.id, 10, 1)]);
    expect(f).toMatchObject({ at: "commit", code: "23514", constraint: "account_transactions_chain" });
    expect(f!.message).toMatch(/first of its balance but does not start at 0/);
    expect(await stateOf(empty.id)).toMatchObject({ balance: { balance_cents: "0", last_sequence: "0" }, transactions: [] });
  });

  it("refuses a well-chained transaction appended without moving the balance", async () => {
    const f = await inOneTransaction([insertTxn("txn_chain_alone", id, "credit", 10, 750, 760, "EUR", 3)]);
    expect(f).toMatchObject({ at: "commit", code: "23514", constraint: "account_transactions_chain" });
    expect(f!.message).toMatch(/past the last_sequence 2 of its balance/);
    expect(await stateOf(id)).toEqual(before);
  });

  it("accepts the same movement written correctly, in any statement order", async () => {
    // Balance first, then the row: the order a data-modifying CTE gives no guarantee about.
    expect(await inOneTransaction([moveBalance(id, 760, 3), insertTxn("txn_chain_ok", id, "credit", 10, 750, 760, "EUR", 3)])).toBeNull();
    // Several rows of one balance in one statement, listed newest first.
    expect(
      await inOneTransaction([
        [
          `insert into account_transactions (id, account_balance_id, transaction_type, amount_cents, balance_before_cents,
                  balance_after_cents, currency, sequence)
           select * from (values ('txn_chain_5', $1, 'debit', 1::bigint, 761::bigint, 760::bigint, 'EUR', 5::bigint),
                                 ('txn_chain_4', $1, 'credit', 1, 760, 761, 'EUR', 4)) v`,
          [id],
        ],
        moveBalance(id, 760, 5),
      ]),
    ).toBeNull();
    expect((await stateOf(id)).transactions.map((t) => [t.sequence, t.balance_before_cents, t.balance_after_cents])).toEqual([
      ["1", "0", "700"],
      ["2", "700", "750"],
      ["3", "750", "760"],
      ["4", "760", "761"],
      ["5", "761", "760"],
    ]);
    expect(await ledger.integrity.verify()).toMatchObject({ problems: [] });
  });
});

describe("a balance that drifts from its history is refused at commit", () => {
  let id: string;

  beforeAll(async () => {
    const b = await ledger.balances.create(balanceInput({ userId: "u-drift", balanceCents: 300n }));
    await ledger.movements.debit({ balanceId: b.id, amountCents: 100n, allowNegative: false, metadata: {} });
    id = b.id;
  });

  it("refuses an UPDATE of balance_cents alone", async () => {
    const f = await inOneTransaction([["update account_balances set balance_cents = balance_cents + 1 where id = $1", [id]]]);
    expect(f).toMatchObject({ at: "commit", code: "23514", constraint: "account_balances_chain" });
    expect(f!.message).toMatch(/has balance_cents 201 but its last transaction ends at 200/);
    // Also in autocommit, as psql would send it.
    await expect(sql(db.url, "update account_balances set balance_cents = 0 where id = $1", [id])).rejects.toMatchObject({
      code: "23514",
    });
    expect(await balanceRowOf(db.url, id)).toMatchObject({ balance_cents: "200", last_sequence: "2", version: "2" });
  });

  it("refuses a last_sequence that is not the newest transaction", async () => {
    const back = await inOneTransaction([moveBalance(id, 300, 1)]);
    expect(back).toMatchObject({ at: "commit", code: "23514", constraint: "account_balances_chain" });
    expect(back!.message).toMatch(/has a transaction past last_sequence 1/);
    const ahead = await inOneTransaction([moveBalance(id, 200, 3)]);
    expect(ahead).toMatchObject({ at: "commit", code: "23514", constraint: "account_balances_chain" });
    expect(ahead!.message).toMatch(/no transaction at last_sequence 3/);
    expect(await balanceRowOf(db.url, id)).toMatchObject({ balance_cents: "200", last_sequence: "2" });
  });

  it("refuses a balance created with money but no opening transaction", async () => {
    const f = await inOneTransaction([
      [
        `insert into account_balances (id, user_id, balance_type, balance_cents, currency, status, last_sequence)
         values ('bal_no_history', 'u-drift', 'general', 5, 'USD', 'active', 0)`,
      ],
    ]);
    expect(f).toMatchObject({ at: "commit", code: "23514", constraint: "account_balances_chain" });
    expect(await sql(db.url, "select id from account_balances where id = 'bal_no_history'")).toEqual([]);
  });

  it("refuses a change of a balance's currency or owner at once", async () => {
    const currency = await inOneTransaction([["update account_balances set currency = 'EUR' where id = $1", [id]]]);
    expect(currency).toMatchObject({ at: "statement", code: "23001", constraint: "account_balances_identity" });
    const owner = await inOneTransaction([["update account_balances set user_id = 'mallory' where id = $1", [id]]]);
    expect(owner).toMatchObject({ at: "statement", code: "23001", constraint: "account_balances_identity" });
    expect(await sql(db.url, "select user_id, currency from account_balances where id = $1", [id])).toEqual([
      { user_id: "u-drift", currency: "USD" },
    ]);
  });

  it("lets status, expiry and metadata change without a movement", async () => {
    expect(
      await inOneTransaction([["update account_balances set status = 'suspended', metadata = '{\"a\":\"b\"}' where id = $1", [id]]]),
    ).toBeNull();
    expect(await balanceRowOf(db.url, id)).toMatchObject({ status: "suspended", balance_cents: "200" });
  });
});

describe("every write of the ledger still commits", () => {
  it("create, batched and single movements, update, close and the sweeper keep a verified ledger", async () => {
    const unbatched = await openLedger({ databaseUrl: db.url, migrate: false, batching: false });
    try {
      const hot = await ledger.balances.create(balanceInput({ userId: "u-ops", balanceCents: 1_000n }));
      const others = await Promise.all(
        Array.from({ length: 5 }, (_, i) => ledger.balances.create(balanceInput({ userId: "u-ops", balanceCents: BigInt(i * 10) }))),
      );
      // One tick of calls: batches with many rows of one balance in one INSERT.
      const calls: Array<Promise<unknown>> = [];
      for (let i = 0; i < 60; i++) {
        calls.push(ledger.movements.credit({ balanceId: hot.id, amountCents: 3n, metadata: {} }));
        calls.push(ledger.movements.debit({ balanceId: hot.id, amountCents: 2n, allowNegative: false, metadata: {} }));
        const other = others[i % others.length]!;
        calls.push(ledger.movements.credit({ balanceId: other.id, amountCents: 1n, metadata: {} }));
      }
      calls.push(unbatched.movements.debit({ balanceId: hot.id, amountCents: 5n, allowNegative: false, metadata: {} }));
      calls.push(unbatched.movements.credit({ balanceId: others[0]!.id, amountCents: 7n, metadata: {} }));
      const settled = await Promise.allSettled(calls);
      expect(settled.filter((s) => s.status === "rejected")).toEqual([]);
      // 1,000 + 60 × (3 − 2) − 5
      expect(await balanceRowOf(db.url, hot.id)).toMatchObject({ balance_cents: "1055", last_sequence: "122" });

      // An update and a close (no movement), the sweeper (an expiration, and a zero balance expired).
      await ledger.balances.update(hot.id, { metadata: { tier: "gold" } });
      const toClose = await ledger.balances.create(balanceInput({ userId: "u-ops" }));
      await ledger.balances.close(toClose.id);
      const expiring = await ledger.balances.create(balanceInput({ userId: "u-ops", balanceCents: 40n }));
      const emptyExpiring = await ledger.balances.create(balanceInput({ userId: "u-ops" }));
      await sql(db.url, "update account_balances set expires_at = now() - interval '1 second' where id = any($1)", [
        [expiring.id, emptyExpiring.id],
      ]);
      expect(await ledger.expiry.sweepExpired()).toBe(2);
      expect(await transactionsOf(db.url, expiring.id)).toMatchObject([
        { transaction_type: "adjustment", balance_after_cents: "40", sequence: "1" },
        { transaction_type: "expiration", balance_before_cents: "40", balance_after_cents: "0", sequence: "2" },
      ]);

      expect(await ledger.integrity.verify()).toMatchObject({ problems: [] });
    } finally {
      await unbatched.close();
    }
  });
});
