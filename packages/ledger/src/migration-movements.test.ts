import { afterAll, beforeAll, expect, it } from "vitest";
import { openLedger } from "./index.js";
import { initOrm } from "./orm.js";
import { createTestDatabase, type TestDatabase } from "./testing.js";
import { sql } from "./test-support/sql.js";

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});

afterAll(async () => {
  await db?.drop();
});

it("the movements migration backfills last_sequence and user_id of existing history", async () => {
  const orm = await initOrm({ databaseUrl: db.url, poolMax: 2 });
  try {
    await orm.getMigrator().up({ to: "Migration20251126090000_initial" });
  } finally {
    await orm.close(true);
  }
  await sql(
    db.url,
    `insert into account_balances (id, user_id, balance_type, balance_cents, currency, status)
     values ('bal_old', 'old-user', 'general', 7, 'EUR', 'active'), ('bal_empty', 'old-user', 'general', 0, 'EUR', 'active')`,
  );
  await sql(
    db.url,
    `insert into account_transactions (id, account_balance_id, transaction_type, amount_cents, balance_before_cents,
       balance_after_cents, currency, status, metadata, created_at, sequence)
     values ('txn_old_1', 'bal_old', 'adjustment', 10, 0, 10, 'EUR', 'completed', '{}', now() - interval '1 hour', 1),
            ('txn_old_2', 'bal_old', 'debit', 3, 10, 7, 'EUR', 'completed', '{}', now() - interval '1 minute', 2)`,
  );

  const ledger = await openLedger({ databaseUrl: db.url });
  try {
    expect(await sql(db.url, "select id, last_sequence from account_balances order by id")).toEqual([
      { id: "bal_empty", last_sequence: "0" },
      { id: "bal_old", last_sequence: "2" },
    ]);
    expect(await sql(db.url, "select id, user_id from account_transactions order by id")).toEqual([
      { id: "txn_old_1", user_id: "old-user" },
      { id: "txn_old_2", user_id: "old-user" },
    ]);
    // History stays immutable after the backfill.
    await expect(sql(db.url, "update account_transactions set description = 'x'")).rejects.toThrow(/immutable/);
    const next = await ledger.movements.credit({ balanceId: "bal_old", amountCents: 1n, metadata: {} });
    expect(next.transaction).toMatchObject({ sequence: 3n, balanceBeforeCents: 7n, balanceAfterCents: 8n, userId: "old-user" });
    expect(await ledger.integrity.verify()).toEqual({ balances: 2, problems: [] });
    const mine = await ledger.reads.listTransactions({ userId: "old-user" }, {}, { limit: 10, page: 1 });
    expect(mine.items.map((t) => t.id)).toEqual([next.transaction.id, "txn_old_2", "txn_old_1"]);
  } finally {
    await ledger.close();
  }
});

it("user_id of a transaction is always its balance's, whatever the writer sends", async () => {
  // With the balance moved in the same database transaction, as the chain constraints require.
  await sql(
    db.url,
    `begin;
     insert into account_transactions (id, account_balance_id, user_id, transaction_type, amount_cents, balance_before_cents,
       balance_after_cents, currency, status, metadata, sequence)
     values ('txn_forged', 'bal_empty', 'mallory', 'credit', 1, 0, 1, 'EUR', 'completed', '{}', 1);
     update account_balances set balance_cents = 1, last_sequence = 1 where id = 'bal_empty';
     commit`,
  );
  expect(await sql(db.url, "select user_id from account_transactions where id = 'txn_forged'")).toEqual([{ user_id: "old-user" }]);
});
