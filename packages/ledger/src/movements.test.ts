import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MAX_CENTS, openLedger, type Ledger } from "./index.js";
import { createTestDatabase, type TestDatabase } from "./testing.js";
import { sql, sqlBypassingTriggers } from "./test-support/sql.js";
import { balanceInput, balanceRowOf, refusal, snapshotOf, transactionsOf } from "./test-support/ledger.js";

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

const open = (userId: string, balanceCents = 0n, extra: Parameters<typeof balanceInput>[0] = {}) =>
  ledger.balances.create(balanceInput({ userId, balanceCents, ...extra }));

describe("credit and debit", () => {
  it("credit writes the balance and one transaction chained after the opening adjustment", async () => {
    const b = await open("mv-credit", 100n, { currency: "EUR" });
    const r = await ledger.movements.credit({
      balanceId: b.id,
      amountCents: 250n,
      description: "top-up",
      referenceCode: "ord-1",
      metadata: { source: "card" },
    });
    expect(r.replayed).toBe(false);
    expect(r.balance).toMatchObject({ id: b.id, balanceCents: 350n, version: 2n, lastSequence: 2n, currency: "EUR" });
    expect(r.transaction).toMatchObject({
      accountBalanceId: b.id,
      userId: "mv-credit",
      transactionType: "credit",
      amountCents: 250n,
      balanceBeforeCents: 100n,
      balanceAfterCents: 350n,
      currency: "EUR",
      description: "top-up",
      referenceCode: "ord-1",
      status: "completed",
      metadata: { source: "card" },
      sequence: 2n,
    });
    expect(r.transaction.id).toMatch(/^txn_/);
    expect(r.transaction.createdAt.getTime()).toBe(r.balance.updatedAt.getTime());
    expect(r.balance.updatedAt.getTime()).toBeGreaterThanOrEqual(b.updatedAt.getTime());

    const txns = await transactionsOf(db.url, b.id);
    expect(txns.map((t) => [t.transaction_type, t.amount_cents, t.balance_before_cents, t.balance_after_cents, t.sequence, t.currency, t.user_id])).toEqual([
      ["adjustment", "100", "0", "100", "1", "EUR", "mv-credit"],
      ["credit", "250", "100", "350", "2", "EUR", "mv-credit"],
    ]);
    expect(txns[1]?.id).toBe(r.transaction.id);
    expect(await balanceRowOf(db.url, b.id)).toMatchObject({ balance_cents: "350", version: "2", last_sequence: "2" });
    // What the ORM reads back is what the movement returned.
    expect(await ledger.balances.get(b.id)).toMatchObject({ balanceCents: 350n, version: 2n, updatedAt: r.balance.updatedAt });
  });

  it("debit takes money out, down to exactly zero", async () => {
    const b = await open("mv-debit", 0n);
    await ledger.movements.credit({ balanceId: b.id, amountCents: 70n, metadata: {} });
    const d1 = await ledger.movements.debit({ balanceId: b.id, amountCents: 30n, allowNegative: false, metadata: {} });
    expect(d1.balance.balanceCents).toBe(40n);
    expect(d1.transaction).toMatchObject({ transactionType: "debit", amountCents: 30n, balanceBeforeCents: 70n, balanceAfterCents: 40n, sequence: 2n });
    const d2 = await ledger.movements.debit({ balanceId: b.id, amountCents: 40n, allowNegative: false, metadata: {} });
    expect(d2.balance).toMatchObject({ balanceCents: 0n, version: 4n, lastSequence: 3n });
    expect((await transactionsOf(db.url, b.id)).map((t) => t.balance_after_cents)).toEqual(["70", "40", "0"]);
  });

  it("refuses a debit below zero with the amounts, and allows it with allowNegative", async () => {
    const b = await open("mv-funds", 10n);
    const before = await snapshotOf(db.url, b.id);
    const err = await refusal(ledger.movements.debit({ balanceId: b.id, amountCents: 11n, allowNegative: false, metadata: {} }));
    expect(err.reason).toBe("INSUFFICIENT_BALANCE");
    expect(err.details).toEqual({ required_cents: "11", available_cents: "10" });
    expect(await snapshotOf(db.url, b.id)).toEqual(before);

    const neg = await ledger.movements.debit({ balanceId: b.id, amountCents: 25n, allowNegative: true, metadata: {} });
    expect(neg.balance.balanceCents).toBe(-15n);
    // Already negative: any further plain debit is refused with the negative amount available.
    const again = await refusal(ledger.movements.debit({ balanceId: b.id, amountCents: 1n, allowNegative: false, metadata: {} }));
    expect(again.details).toEqual({ required_cents: "1", available_cents: "-15" });
    // A credit brings it back.
    expect((await ledger.movements.credit({ balanceId: b.id, amountCents: 15n, metadata: {} })).balance.balanceCents).toBe(0n);
  });

  it("refuses bad amounts and input before touching anything", async () => {
    const b = await open("mv-invalid", 5n);
    const before = await snapshotOf(db.url, b.id);
    const bad: unknown[] = [0n, -1n, MAX_CENTS + 1n, 5, "5", null];
    for (const amountCents of bad) {
      for (const op of ["credit", "debit"] as const) {
        const err = await refusal(
          ledger.movements[op]({ balanceId: b.id, amountCents: amountCents as bigint, allowNegative: false, metadata: {} }),
        );
        expect(err.reason).toBe("VALIDATION_FAILED");
        expect(err.details).toEqual({ field: "amount_cents" });
      }
    }
    const meta = await refusal(ledger.movements.credit({ balanceId: b.id, amountCents: 1n, metadata: { n: 1 as never } }));
    expect(meta.details).toEqual({ field: "metadata" });
    const flag = await refusal(ledger.movements.debit({ balanceId: b.id, amountCents: 1n, allowNegative: "yes" as never, metadata: {} }));
    expect(flag.details).toEqual({ field: "allow_negative" });
    const key = await refusal(
      ledger.movements.credit({ balanceId: b.id, amountCents: 1n, metadata: {}, idempotency: { scope: "s", key: "", fingerprint: "f" } }),
    );
    expect(key.details).toEqual({ field: "idempotency_key" });
    expect(await snapshotOf(db.url, b.id)).toEqual(before);
  });

  it("keeps odd text exact and refuses NUL characters as invalid input, not as a database failure", async () => {
    const b = await open("mv-text", 5n);
    const odd = `it's "q" \\ ?? ? $1 :x {"a":1} é 😀`;
    const r = await ledger.movements.credit({ balanceId: b.id, amountCents: 1n, description: odd, referenceCode: odd, metadata: { [odd]: odd } });
    const listed = await ledger.reads.listTransactions({ balanceId: b.id }, {}, { limit: 1, page: 1 });
    expect(listed.items[0]).toMatchObject({ id: r.transaction.id, description: odd, referenceCode: odd, metadata: { [odd]: odd } });

    const before = await snapshotOf(db.url, b.id);
    const cases: Array<[() => Promise<unknown>, string]> = [
      [() => ledger.movements.credit({ balanceId: b.id, amountCents: 1n, description: "a\u0000b", metadata: {} }), "VALIDATION_FAILED"],
      [() => ledger.movements.credit({ balanceId: b.id, amountCents: 1n, metadata: { k: "a\u0000b" } }), "VALIDATION_FAILED"],
      [() => ledger.movements.credit({ balanceId: b.id, amountCents: 1n, metadata: {}, idempotency: { scope: "s\u0000", key: "k", fingerprint: "f" } }), "VALIDATION_FAILED"],
      [() => ledger.movements.credit({ balanceId: `${b.id}\u0000`, amountCents: 1n, metadata: {} }), "NOT_FOUND"],
      [() => ledger.movements.credit({ balanceId: b.id, ownerId: "mv-text\u0000", amountCents: 1n, metadata: {} }), "NOT_FOUND"],
      [() => ledger.reads.statistics(`${b.id}\u0000`, {}), "NOT_FOUND"],
      [() => ledger.reads.listTransactions({ balanceId: `${b.id}\u0000` }, {}, { limit: 1, page: 1 }), "NOT_FOUND"],
      [() => ledger.balances.update(`${b.id}\u0000`, { metadata: {} }), "NOT_FOUND"],
      [() => ledger.balances.create(balanceInput({ userId: "u\u0000" })), "VALIDATION_FAILED"],
      [() => ledger.reads.totals({ userId: "mv-text", referenceCode: "\u0000" }), "VALIDATION_FAILED"],
    ];
    for (const [call, reason] of cases) expect((await refusal(call())).reason).toBe(reason);
    expect(await ledger.balances.get(`${b.id}\u0000`)).toBeNull();
    expect(await snapshotOf(db.url, b.id)).toEqual(before);
  });

  it("answers NOT_FOUND for an unknown balance and for another owner's, writing nothing", async () => {
    const b = await open("mv-owner", 5n);
    const before = await snapshotOf(db.url, b.id);
    for (const balanceId of ["bal_nope", ""]) {
      expect((await refusal(ledger.movements.credit({ balanceId, amountCents: 1n, metadata: {} }))).reason).toBe("NOT_FOUND");
    }
    const err = await refusal(ledger.movements.debit({ balanceId: b.id, amountCents: 1n, allowNegative: false, metadata: {}, ownerId: "someone-else" }));
    expect(err.reason).toBe("NOT_FOUND");
    expect(await snapshotOf(db.url, b.id)).toEqual(before);
    // The owner may.
    const ok = await ledger.movements.debit({ balanceId: b.id, amountCents: 1n, allowNegative: false, metadata: {}, ownerId: "mv-owner" });
    expect(ok.balance.balanceCents).toBe(4n);
  });

  it("moves money only on active, unexpired balances, in the spec's order of checks", async () => {
    const suspended = await open("mv-status", 5n, { status: "suspended" });
    const closed = await open("mv-status", 0n, { status: "closed" });
    const expiredStatus = await open("mv-status", 0n, { status: "expired" });
    for (const b of [suspended, closed, expiredStatus]) {
      const before = await snapshotOf(db.url, b.id);
      for (const op of ["credit", "debit"] as const) {
        const err = await refusal(ledger.movements[op]({ balanceId: b.id, amountCents: 1n, allowNegative: false, metadata: {} }));
        expect(err.reason).toBe("BALANCE_NOT_ACTIVE");
        expect(err.details).toEqual({ status: b.status });
      }
      expect(await snapshotOf(db.url, b.id)).toEqual(before);
    }
    // Past expires_at while still active (the sweeper has not run): expired.
    const due = await open("mv-status", 5n, { expiresAt: new Date(Date.now() + 150) });
    await new Promise((r) => setTimeout(r, 200));
    const before = await snapshotOf(db.url, due.id);
    for (const op of ["credit", "debit"] as const) {
      const err = await refusal(ledger.movements[op]({ balanceId: due.id, amountCents: 1n, allowNegative: false, metadata: {} }));
      expect(err.reason).toBe("BALANCE_EXPIRED");
    }
    expect(await snapshotOf(db.url, due.id)).toEqual(before);
    // Visibility first: another owner's suspended balance is simply not found.
    const hidden = await refusal(ledger.movements.credit({ balanceId: suspended.id, amountCents: 1n, metadata: {}, ownerId: "x" }));
    expect(hidden.reason).toBe("NOT_FOUND");
    // Status before expiry, expiry before funds.
    const suspendedDue = await open("mv-status", 0n, { status: "suspended", expiresAt: new Date(Date.now() - 1000) });
    expect((await refusal(ledger.movements.debit({ balanceId: suspendedDue.id, amountCents: 1n, allowNegative: false, metadata: {} }))).reason).toBe("BALANCE_NOT_ACTIVE");
    expect((await refusal(ledger.movements.debit({ balanceId: due.id, amountCents: 999n, allowNegative: false, metadata: {} }))).reason).toBe("BALANCE_EXPIRED");
  });

  it("refuses a result outside ±(2^53-1) with AMOUNT_OUT_OF_RANGE, writing nothing", async () => {
    const top = await open("mv-range", MAX_CENTS - 5n);
    const before = await snapshotOf(db.url, top.id);
    const err = await refusal(ledger.movements.credit({ balanceId: top.id, amountCents: 6n, metadata: {} }));
    expect(err.reason).toBe("AMOUNT_OUT_OF_RANGE");
    expect(await snapshotOf(db.url, top.id)).toEqual(before);
    expect((await ledger.movements.credit({ balanceId: top.id, amountCents: 5n, metadata: {} })).balance.balanceCents).toBe(MAX_CENTS);

    const bottom = await open("mv-range", 0n);
    await ledger.movements.debit({ balanceId: bottom.id, amountCents: MAX_CENTS, allowNegative: true, metadata: {} });
    const low = await snapshotOf(db.url, bottom.id);
    // Range is checked before funds.
    const e2 = await refusal(ledger.movements.debit({ balanceId: bottom.id, amountCents: 1n, allowNegative: false, metadata: {} }));
    expect(e2.reason).toBe("AMOUNT_OUT_OF_RANGE");
    const e3 = await refusal(ledger.movements.debit({ balanceId: bottom.id, amountCents: 1n, allowNegative: true, metadata: {} }));
    expect(e3.reason).toBe("AMOUNT_OUT_OF_RANGE");
    expect(await snapshotOf(db.url, bottom.id)).toEqual(low);
  });
});

describe("concurrency", () => {
  it("200 concurrent debits of 1 on a balance of 50: exactly 50 succeed, it ends at 0", async () => {
    const b = await open("cc-overdraft", 50n);
    const results = await Promise.allSettled(
      Array.from({ length: 200 }, () => ledger.movements.debit({ balanceId: b.id, amountCents: 1n, allowNegative: false, metadata: {} })),
    );
    const ok = results.filter((r) => r.status === "fulfilled");
    const refused = results.filter((r) => r.status === "rejected").map((r) => (r as PromiseRejectedResult).reason);
    expect(ok).toHaveLength(50);
    expect(refused).toHaveLength(150);
    expect(new Set(refused.map((e) => e.reason))).toEqual(new Set(["INSUFFICIENT_BALANCE"]));
    expect(await balanceRowOf(db.url, b.id)).toMatchObject({ balance_cents: "0", version: "51", last_sequence: "51" });
    const txns = await transactionsOf(db.url, b.id);
    expect(txns).toHaveLength(51);
    expect(txns.map((t) => Number(t.sequence))).toEqual(Array.from({ length: 51 }, (_, i) => i + 1));
    expect((await ledger.integrity.verify()).problems).toEqual([]);
  });

  it("concurrent credits and debits on several balances lose no update", async () => {
    const balances = await Promise.all(Array.from({ length: 4 }, () => open("cc-mix", 1_000n)));
    const expected = new Map(balances.map((b) => [b.id, 1_000n]));
    const ops: Array<Promise<unknown>> = [];
    for (let i = 0; i < 160; i++) {
      const b = balances[i % balances.length]!;
      const amount = BigInt((i % 7) + 1);
      if (i % 3 === 0) {
        expected.set(b.id, expected.get(b.id)! - amount);
        ops.push(ledger.movements.debit({ balanceId: b.id, amountCents: amount, allowNegative: false, metadata: {} }));
      } else {
        expected.set(b.id, expected.get(b.id)! + amount);
        ops.push(ledger.movements.credit({ balanceId: b.id, amountCents: amount, metadata: {} }));
      }
    }
    await Promise.all(ops);
    for (const b of balances) {
      const row = await balanceRowOf(db.url, b.id);
      expect(BigInt(row!.balance_cents)).toBe(expected.get(b.id));
      expect(row!.version).toBe("41");
    }
    expect((await ledger.integrity.verify()).problems).toEqual([]);
  });
});

describe("integrity.verify", () => {
  it("is clean for a whole ledger and names what is broken", async () => {
    const clean = await ledger.integrity.verify();
    expect(clean.problems).toEqual([]);
    const count = Number((await sql<{ n: string }>(db.url, "select count(*) as n from account_balances"))[0]?.n);
    expect(clean.balances).toBe(count);

    // Break a balance behind the ledger's back: an out-of-chain row, and a drifted balance.
    // The schema refuses both (chain constraints), so its triggers are switched off for them.
    const b = await open("verify-broken", 10n);
    await sqlBypassingTriggers(
      db.url,
      `insert into account_transactions (id, account_balance_id, user_id, transaction_type, amount_cents, balance_before_cents,
         balance_after_cents, currency, status, metadata, created_at, sequence)
       values ('txn_broken', $1, 'verify-broken', 'credit', 5, 7, 12, 'USD', 'completed', '{}', now(), 3)`,
      [b.id],
    );
    const drifted = await open("verify-broken", 0n);
    await sqlBypassingTriggers(db.url, "update account_balances set balance_cents = 3 where id = $1", [drifted.id]);

    const report = await ledger.integrity.verify();
    const byBalance = (id: string) => report.problems.filter((p) => p.balanceId === id).map((p) => p.problem);
    expect(byBalance(b.id)).toEqual([
      "sequence is not 1..n without gaps (first wrong at 3)",
      "chain broken at sequence 3: balance_before_cents is not the previous balance_after_cents",
      "balance_cents 10 is not the last balance_after_cents 12",
      "last_sequence 1 is not the newest sequence 3",
    ]);
    expect(byBalance(drifted.id)).toEqual(["balance_cents 3 is not the last balance_after_cents 0"]);
    expect(report.problems).toHaveLength(5);
  });
});
