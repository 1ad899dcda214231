import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { migrate, migrationsList, openLedger, type Ledger } from "./index.js";
import { createTestDatabase, type TestDatabase } from "./testing.js";
import { sql, sqlError } from "./test-support/sql.js";

let db: TestDatabase;
let ledger: Ledger;

beforeAll(async () => {
  db = await createTestDatabase();
});

afterAll(async () => {
  await ledger?.close();
  await db?.drop();
});

describe("migrations", () => {
  it("a fresh database is not ready until migrated", async () => {
    const unmigrated = await openLedger({ databaseUrl: db.url, migrate: false });
    try {
      expect(await unmigrated.ready()).toEqual({ ok: false, detail: `${migrationsList.length} migration(s) not applied` });
    } finally {
      await unmigrated.close();
    }
    expect(await unmigrated.ready()).toEqual({ ok: false, detail: "closed" });
  });

  it("migrate() applies every committed migration once", async () => {
    const applied = await migrate(db.url);
    expect(applied).toEqual(migrationsList.map((m) => m.name));
    expect(await migrate(db.url)).toEqual([]);
    const rows = await sql<{ name: string }>(db.url, "select name from mikro_orm_migrations order by id");
    expect(rows.map((r) => r.name)).toEqual(migrationsList.map((m) => m.name));
  });

  it("openLedger migrates concurrently without conflict and is ready", async () => {
    const [a, b] = await Promise.all([openLedger({ databaseUrl: db.url }), openLedger({ databaseUrl: db.url })]);
    await b.close();
    ledger = a;
    expect(await ledger.ready()).toEqual({ ok: true });
    const tables = await sql<{ table_name: string }>(
      db.url,
      "select table_name from information_schema.tables where table_schema = 'public' order by table_name",
    );
    expect(tables.map((t) => t.table_name)).toEqual(
      expect.arrayContaining(["account_balances", "account_transactions", "sessions"]),
    );
  });

  it("ready() reports an unreachable database without throwing", async () => {
    const url = new URL(db.url);
    url.port = "1"; // nothing listens there
    const broken = await openLedger({ databaseUrl: url.toString(), migrate: false });
    try {
      const started = Date.now();
      expect(await broken.ready()).toEqual({ ok: false, detail: "database unreachable" });
      expect(Date.now() - started).toBeLessThan(3_500);
      await expect(broken.balances.get("bal_x")).rejects.toMatchObject({
        reason: "UNAVAILABLE",
        message: "the database is unavailable, try again later",
      });
    } finally {
      await broken.close();
    }
  });
});

describe("append-only ledger rows", () => {
  let balanceId: string;

  beforeAll(async () => {
    const balance = await ledger.balances.create({
      userId: "u-schema",
      balanceType: "general",
      balanceCents: 700n,
      currency: "EUR",
      status: "active",
      metadata: {},
    });
    balanceId = balance.id;
  });

  it("refuses UPDATE of a transaction", async () => {
    const err = await sqlError(db.url, "update account_transactions set amount_cents = 1 where account_balance_id = $1", [
      balanceId,
    ]);
    expect(err.code).toBe("23001");
    expect(err.message).toMatch(/UPDATE on account_transactions is not allowed/);
  });

  it("refuses DELETE and TRUNCATE of transactions and DELETE of balances", async () => {
    expect((await sqlError(db.url, "delete from account_transactions")).code).toBe("23001");
    expect((await sqlError(db.url, "truncate account_transactions cascade")).code).toBe("23001");
    expect((await sqlError(db.url, "delete from account_balances where id = $1", [balanceId])).code).toBe("23001");
    const rows = await sql<{ amount_cents: string }>(
      db.url,
      "select amount_cents from account_transactions where account_balance_id = $1",
      [balanceId],
    );
    expect(rows).toEqual([{ amount_cents: "700" }]);
  });

  it("refuses a transaction whose before/after do not match its amount and type", async () => {
    const insert = (type: string, amount: number, before: number, after: number, seq: number) =>
      sqlError(
        db.url,
        `insert into account_transactions (id, account_balance_id, transaction_type, amount_cents,
           balance_before_cents, balance_after_cents, currency, sequence)
         values ($1, $2, $3, $4, $5, $6, 'EUR', $7)`,
        [`txn_test_${type}_${seq}`, balanceId, type, amount, before, after, seq],
      );
    expect((await insert("credit", 100, 700, 700, 2)).code).toBe("23514");
    expect((await insert("debit", 100, 700, 800, 2)).code).toBe("23514");
    expect((await insert("adjustment", 100, 700, 850, 2)).code).toBe("23514");
    // the same sequence twice for one balance
    expect((await insert("credit", 100, 700, 800, 1)).code).toBe("23505");
  });

  it("refuses balances out of the safe integer range and lower-case currencies", async () => {
    const insert = (cents: string, currency: string) =>
      sqlError(
        db.url,
        `insert into account_balances (id, user_id, balance_type, balance_cents, currency, status)
         values ('bal_range_test', 'u', 'general', $1, $2, 'active')`,
        [cents, currency],
      );
    expect((await insert("9007199254740992", "USD")).code).toBe("23514");
    expect((await insert("0", "usd")).code).toBe("23514");
  });
});
