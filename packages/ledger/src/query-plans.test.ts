import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openLedger, type Ledger } from "./index.js";
import { DUE_BALANCES_SQL, EXPIRE_BALANCES_SQL } from "./expiry.js";
import { LOCK_BALANCES_SQL, WRITE_BATCH_SQL } from "./movement-batch.js";
import { expiringQueries, statisticsQuery, totalsQuery, transactionQueries, type Query } from "./reads.js";
import { balanceListQueries } from "./balance-filter.js";
import { createTestDatabase, type TestDatabase } from "./testing.js";
import { sql } from "./test-support/sql.js";

// Every list the API serves must run on an index, never a scan of a whole table. The
// planner is asked with ordinary settings (enable_seqscan on) over enough rows, after
// ANALYZE, as production would. The plans seen are recorded in docs/query-plans.md.

let db: TestDatabase;
let ledger: Ledger;

const USERS = 200;
const BALANCES_PER_USER = 10;
const TXNS_PER_BALANCE = 25;

beforeAll(async () => {
  db = await createTestDatabase();
  ledger = await openLedger({ databaseUrl: db.url });
  // One database transaction: the schema checks at commit that every balance ends where its
  // history does (the chain constraints).
  await sql(
    db.url,
    `begin;
     insert into account_balances (id, user_id, balance_type, balance_cents, currency, status, expires_at, version, last_sequence)
     select 'bal_' || lpad(g::text, 6, '0'),
            'user-' || (g % ${USERS}),
            (array['general', 'credits', 'promotional', 'refund'])[1 + g % 4],
            ${TXNS_PER_BALANCE},
            case when g % 2 = 0 then 'USD' else 'EUR' end,
            case when g % 17 = 0 then 'suspended' else 'active' end,
            case when g % 10 = 0 then now() + (g % 60) * interval '1 day' - interval '12 hours' end,
            ${TXNS_PER_BALANCE + 1},
            ${TXNS_PER_BALANCE}
       from generate_series(1, ${USERS * BALANCES_PER_USER}) g;
     insert into account_transactions (id, account_balance_id, transaction_type, amount_cents, balance_before_cents,
            balance_after_cents, currency, status, metadata, created_at, sequence)
     select 'txn_' || b.id || '_' || s, b.id, 'credit', 1, s - 1, s, b.currency, 'completed', '{}',
            now() - interval '30 days' + s * interval '1 hour' + (random() * interval '1 minute'), s
       from account_balances b, generate_series(1, ${TXNS_PER_BALANCE}) s;
     commit`,
  );
  await sql(db.url, "analyze account_balances");
  await sql(db.url, "analyze account_transactions");
}, 60_000);

afterAll(async () => {
  await ledger?.close();
  await db?.drop();
});

async function plan(q: Query): Promise<string> {
  const em = ledger.orm.em.fork();
  const rows = (await em.execute(`explain ${q.sql}`, q.params)) as Array<{ "QUERY PLAN": string }>;
  return rows.map((r) => r["QUERY PLAN"]).join("\n");
}

const showPlans = process.env.SHOW_QUERY_PLANS === "1";

async function expectIndexed(name: string, q: Query, index: string): Promise<void> {
  const text = await plan(q);
  if (showPlans) console.log(`### ${name}\n${text}\n`);
  expect(text, name).not.toMatch(/Seq Scan on account_(transactions|balances)/);
  expect(text, name).toContain(index);
}

const page = { limit: 50, offset: 0 };
const window = { from: new Date(Date.now() - 20 * 86_400_000), to: new Date() };

describe("query plans", () => {
  it("one balance's transactions", async () => {
    const q = transactionQueries({ balanceId: "bal_000123" }, {}, page);
    await expectIndexed("balance transactions: page", q.items, "account_transactions_history_idx");
    await expectIndexed("balance transactions: total", q.total, "account_transactions_history_idx");
    const f = transactionQueries({ balanceId: "bal_000123" }, { transactionType: "debit", ...window }, page);
    await expectIndexed("balance transactions, filtered: page", f.items, "account_transactions_history_idx");
    await expectIndexed("balance transactions, filtered: total", f.total, "account_transactions_history_idx");
  });

  it("a user's transactions", async () => {
    const q = transactionQueries({ userId: "user-7" }, {}, page);
    await expectIndexed("user transactions: page", q.items, "account_transactions_user_history_idx");
    await expectIndexed("user transactions: total", q.total, "account_transactions_user_history_idx");
    const f = transactionQueries({ userId: "user-7", currency: "EUR" }, { transactionType: "credit", ...window }, page);
    await expectIndexed("user transactions, filtered: page", f.items, "account_transactions_user_history_idx");
    await expectIndexed("user transactions, filtered: total", f.total, "account_transactions_user_history_idx");
  });

  it("a user's balances (balances.list)", async () => {
    const q = balanceListQueries({ userId: "user-7" }, page);
    await expectIndexed("balances: page", q.items, "account_balances_user_created_idx");
    await expectIndexed("balances: total", q.total, "account_balances_user_created_idx");
    const f = balanceListQueries({ userId: "user-7", status: "expired", currency: "EUR" }, page);
    await expectIndexed("balances, expired in EUR: page", f.items, "account_balances_user_created_idx");
  });

  it("totals and statistics", async () => {
    await expectIndexed("totals", totalsQuery({ userId: "user-7" }), "account_balances_user_created_idx");
    await expectIndexed("totals, by currency", totalsQuery({ userId: "user-7", currency: "USD" }), "account_balances_user_created_idx");
    await expectIndexed("statistics", statisticsQuery("bal_000123", {}, undefined), "account_transactions_history_idx");
    await expectIndexed("statistics, window", statisticsQuery("bal_000123", window, "user-123"), "account_transactions_history_idx");
  });

  it("expiring balances and the sweeper", async () => {
    const q = expiringQueries({ withinDays: 7 }, page);
    await expectIndexed("expiring: page", q.items, "account_balances_expiring_idx");
    await expectIndexed("expiring: total", q.total, "account_balances_expiring_idx");
    await expectIndexed("sweeper: due balances", { sql: DUE_BALANCES_SQL, params: [100] }, "account_balances_expiring_idx");
  });

  // The writes take their rows from JSON, for which the planner guesses 100 rows whatever
  // the batch holds: without care it hash-joins them against a scan of every balance.
  // (EXPLAIN alone does not run them.)
  it("a batch of movements and the sweeper lock and write balances by primary key", async () => {
    const one = (o: object) => JSON.stringify([o]);
    await expectIndexed(
      "movements: lock",
      { sql: LOCK_BALANCES_SQL, params: [JSON.stringify(["bal_000123"]), one({ id: "bal_000123", owner: null })] },
      "account_balances_pkey",
    );
    await expectIndexed(
      "movements: write",
      {
        sql: WRITE_BATCH_SQL,
        params: [
          one({ id: "bal_000123", balance_cents: 24, moves: 1, updated_at: new Date().toISOString() }),
          one({
            id: "txn_plan",
            account_balance_id: "bal_000123",
            transaction_type: "debit",
            amount_cents: 1,
            balance_before_cents: 25,
            balance_after_cents: 24,
            currency: "EUR",
            description: null,
            reference_code: null,
            metadata: {},
            created_at: new Date().toISOString(),
            sequence: 26,
          }),
          "[]",
          "[]",
        ],
      },
      "account_balances_pkey",
    );
    await expectIndexed(
      "sweeper: expire",
      { sql: EXPIRE_BALANCES_SQL, params: [one({ balance_id: "bal_000123", txn_id: "txn_plan", before_cents: 25 })] },
      "account_balances_pkey",
    );
  });
});
