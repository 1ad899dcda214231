import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openLedger, startSweeper, type Ledger } from "./index.js";
import { createTestDatabase, type TestDatabase } from "./testing.js";
import { sql } from "./test-support/sql.js";
import { balanceInput, balanceRowOf, refusal, transactionsOf } from "./test-support/ledger.js";

let db: TestDatabase;
let ledger: Ledger;

beforeAll(async () => {
  db = await createTestDatabase();
  ledger = await openLedger({ databaseUrl: db.url, poolMax: 10 });
});

afterAll(async () => {
  await ledger?.close();
  await db?.drop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const past = () => new Date(Date.now() - 60_000);

describe("sweepExpired", () => {
  it("expires due balances: positive ones through an expiration transaction to zero", async () => {
    const positive = await ledger.balances.create(balanceInput({ userId: "sw-1", balanceCents: 500n, expiresAt: new Date(Date.now() + 1_500) }));
    await ledger.movements.debit({ balanceId: positive.id, amountCents: 120n, allowNegative: false, metadata: {} });
    const empty = await ledger.balances.create(balanceInput({ userId: "sw-1", balanceCents: 0n, expiresAt: past() }));
    const negative = await ledger.balances.create(balanceInput({ userId: "sw-1", balanceCents: 0n }));
    await ledger.movements.debit({ balanceId: negative.id, amountCents: 9n, allowNegative: true, metadata: {} });
    await ledger.balances.update(negative.id, { expiresAt: past() });
    const later = await ledger.balances.create(balanceInput({ userId: "sw-1", balanceCents: 10n, expiresAt: new Date(Date.now() + 3_600_000) }));
    const suspended = await ledger.balances.create(balanceInput({ userId: "sw-1", balanceCents: 10n, status: "suspended", expiresAt: past() }));
    // Wide margins: a loaded 2-core machine can take a second over the creates above.
    await sleep(1_600);

    expect(await ledger.expiry.sweepExpired()).toBe(3);

    expect(await balanceRowOf(db.url, positive.id)).toMatchObject({ balance_cents: "0", status: "expired", version: "3", last_sequence: "3" });
    expect((await transactionsOf(db.url, positive.id)).map((t) => [t.transaction_type, t.amount_cents, t.balance_before_cents, t.balance_after_cents, t.sequence])).toEqual([
      ["adjustment", "500", "0", "500", "1"],
      ["debit", "120", "500", "380", "2"],
      ["expiration", "380", "380", "0", "3"],
    ]);
    expect(await balanceRowOf(db.url, empty.id)).toMatchObject({ balance_cents: "0", status: "expired", version: "2", last_sequence: "0" });
    expect(await transactionsOf(db.url, empty.id)).toEqual([]);
    // Expiry removes money; it never forgives a debt.
    expect(await balanceRowOf(db.url, negative.id)).toMatchObject({ balance_cents: "-9", status: "expired" });
    expect(await transactionsOf(db.url, negative.id)).toHaveLength(1);
    expect(await balanceRowOf(db.url, later.id)).toMatchObject({ status: "active", balance_cents: "10", version: "1" });
    expect(await balanceRowOf(db.url, suspended.id)).toMatchObject({ status: "suspended", balance_cents: "10", version: "1" });

    expect(await ledger.expiry.sweepExpired()).toBe(0);
    const after = await ledger.movements.credit({ balanceId: later.id, amountCents: 1n, metadata: {} }).then((r) => r.balance.balanceCents);
    expect(after).toBe(11n);
    expect((await refusal(ledger.movements.credit({ balanceId: positive.id, amountCents: 1n, metadata: {} }))).reason).toBe("BALANCE_NOT_ACTIVE");
    expect((await ledger.integrity.verify()).problems).toEqual([]);
  });

  it("works in batches and refuses a bad batch size", async () => {
    for (let i = 0; i < 5; i++) await ledger.balances.create(balanceInput({ userId: "sw-batch", balanceCents: 3n, expiresAt: past() }));
    expect(await ledger.expiry.sweepExpired({ batchSize: 2 })).toBe(2);
    expect(await ledger.expiry.sweepExpired({ batchSize: 2 })).toBe(2);
    expect(await ledger.expiry.sweepExpired({ batchSize: 2 })).toBe(1);
    expect(await ledger.expiry.sweepExpired({ batchSize: 2 })).toBe(0);
    expect((await refusal(ledger.expiry.sweepExpired({ batchSize: 0 }))).reason).toBe("VALIDATION_FAILED");
  });

  it("many sweepers racing debits: never negative, each balance expired once, the ledger verifies", async () => {
    // Three more ledgers stand for three more server instances sharing the database.
    const others = await Promise.all([1, 2, 3].map(() => openLedger({ databaseUrl: db.url, poolMax: 4, migrate: false })));
    try {
      const expiresAt = new Date(Date.now() + 2_000);
      const balances = await Promise.all(
        Array.from({ length: 30 }, () => ledger.balances.create(balanceInput({ userId: "sw-race", balanceCents: 100n, expiresAt }))),
      );
      const instances = [ledger, ...others];
      let stop = false;
      const debits = Array.from({ length: 8 }, async (_, w) => {
        let n = 0;
        while (!stop) {
          const b = balances[(n++ * 7 + w) % balances.length]!;
          await instances[w % instances.length]!.movements.debit({ balanceId: b.id, amountCents: 3n, allowNegative: false, metadata: {} }).catch((err) => {
            if (!["BALANCE_EXPIRED", "BALANCE_NOT_ACTIVE", "INSUFFICIENT_BALANCE"].includes(err.reason)) throw err;
          });
        }
      });
      const sweeps = instances.map(async (l) => {
        let total = 0;
        while (!stop) {
          total += await l.expiry.sweepExpired({ batchSize: 7 });
          await sleep(5);
        }
        return total;
      });
      await sleep(2_600);
      stop = true;
      await Promise.all(debits);
      const expiredBy = await Promise.all(sweeps);
      // Whatever any sweeper left behind (a row locked by a debit at that moment).
      const rest = await ledger.expiry.sweepExpired({ batchSize: 1000 });
      expect(expiredBy.reduce((a, b) => a + b, 0) + rest).toBe(30);

      const rows = await sql<{ id: string; balance_cents: string; status: string; expirations: string }>(
        db.url,
        `select b.id, b.balance_cents, b.status,
                (select count(*) from account_transactions t where t.account_balance_id = b.id and t.transaction_type = 'expiration') as expirations
           from account_balances b where b.user_id = 'sw-race'`,
      );
      for (const r of rows) {
        expect(r).toMatchObject({ balance_cents: "0", status: "expired" });
        expect(Number(r.expirations)).toBeLessThanOrEqual(1);
      }
      const negatives = await sql(db.url, "select 1 from account_transactions where user_id = 'sw-race' and balance_after_cents < 0");
      expect(negatives).toEqual([]);
      // Debits really raced the expiry: some balances were drawn down before it.
      const debited = await sql(db.url, "select 1 from account_transactions where user_id = 'sw-race' and transaction_type = 'debit'");
      expect(debited.length).toBeGreaterThan(0);
      expect((await ledger.integrity.verify()).problems).toEqual([]);
    } finally {
      await Promise.all(others.map((o) => o.close()));
    }
  });
});

describe("a movement that waited for the balance's lock", () => {
  // The lock is held by a session that changes nothing (a stuck client, a batch that rolls
  // back on its lock timeout): PostgreSQL then does not recompute what the waiting scan read,
  // so expiry must be judged on the clock after the wait, not before it.
  for (const batching of [true, false]) {
    it(`is refused when the balance expired during the wait (batching ${batching ? "on" : "off"})`, async () => {
      const own = batching ? ledger : await openLedger({ databaseUrl: db.url, poolMax: 4, batching: false });
      try {
        const expiresAt = new Date(Date.now() + 2_000);
        const b = await own.balances.create(balanceInput({ userId: `lockwait-${batching}`, balanceCents: 500n, expiresAt }));
        const holder = new pg.Client({ connectionString: db.url });
        await holder.connect();
        try {
          await holder.query("begin");
          await holder.query("select id from account_balances where id = $1 for update", [b.id]);
          // Sent well before the expiry, so it is the wait that crosses it.
          expect(Date.now()).toBeLessThan(expiresAt.getTime() - 500);
          const debit = refusal(own.movements.debit({ balanceId: b.id, amountCents: 50n, allowNegative: false, metadata: {} }));
          await sleep(expiresAt.getTime() - Date.now() + 300);
          await holder.query("commit");
          expect((await debit).reason).toBe("BALANCE_EXPIRED");
        } finally {
          await holder.end();
        }
        expect(await balanceRowOf(db.url, b.id)).toMatchObject({ balance_cents: "500", version: "1" });
        expect((await transactionsOf(db.url, b.id)).map((t) => t.transaction_type)).toEqual(["adjustment"]);
      } finally {
        if (own !== ledger) await own.close();
      }
    });
  }
});

describe("startSweeper", () => {
  it("reports a failed run on warn, and runs that did something on log", async () => {
    const lines: string[] = [];
    let calls = 0;
    const sweeper = startSweeper(
      {
        expiry: { sweepExpired: async () => (++calls === 1 ? Promise.reject(new Error("the database is unavailable")) : 0) },
        idempotency: { purgeExpired: async () => 2 },
      },
      { intervalMs: 20, log: (m) => void lines.push(`info ${m}`), warn: (m) => void lines.push(`warn ${m}`) },
    );
    for (let i = 0; i < 100 && calls < 2; i++) await sleep(10);
    await sweeper.stop();
    expect(lines[0]).toBe("warn expiry sweeper: run failed: the database is unavailable");
    expect(lines[1]).toBe("info expiry sweeper: purged 2 idempotency key(s)");
  });


  it("sweeps now and on every interval, purges expired keys, and stops cleanly", async () => {
    const due = await ledger.balances.create(balanceInput({ userId: "sw-timer", balanceCents: 8n, expiresAt: past() }));
    await ledger.movements.credit({ balanceId: (await ledger.balances.create(balanceInput({ userId: "sw-timer" }))).id, amountCents: 1n, metadata: {}, idempotency: { scope: "s", key: "old", fingerprint: "f" } });
    await sql(db.url, "update idempotency_keys set expires_at = now() - interval '1 second' where key = 'old'");
    const lines: string[] = [];
    const sweeper = startSweeper(ledger, { intervalMs: 50, log: (m) => lines.push(m) });
    for (let i = 0; i < 200 && (await balanceRowOf(db.url, due.id))?.status !== "expired"; i++) await sleep(25);
    expect(await balanceRowOf(db.url, due.id)).toMatchObject({ status: "expired", balance_cents: "0" });

    const next = await ledger.balances.create(balanceInput({ userId: "sw-timer", balanceCents: 2n, expiresAt: new Date(Date.now() + 100) }));
    for (let i = 0; i < 200 && (await balanceRowOf(db.url, next.id))?.status !== "expired"; i++) await sleep(25);
    expect(await balanceRowOf(db.url, next.id)).toMatchObject({ status: "expired" });
    await sweeper.stop();
    expect(lines).toContain("expiry sweeper: expired 1 balance(s)");
    expect(lines).toContain("expiry sweeper: purged 1 idempotency key(s)");
    expect(await sql(db.url, "select 1 from idempotency_keys where key = 'old'")).toEqual([]);

    // Stopped: nothing more happens.
    const after = await ledger.balances.create(balanceInput({ userId: "sw-timer", balanceCents: 2n, expiresAt: past() }));
    await sleep(150);
    expect(await balanceRowOf(db.url, after.id)).toMatchObject({ status: "active" });
  });
});
