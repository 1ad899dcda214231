import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openLedger, type Ledger } from "./index.js";
import { createTestDatabase, type TestDatabase } from "./testing.js";
import { sql } from "./test-support/sql.js";
import { balanceInput, refusal } from "./test-support/ledger.js";

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
const page = (limit = 100, p = 1) => ({ limit, page: p });

describe("listTransactions", () => {
  it("lists one balance newest first, with type and time filters and pages", async () => {
    const b = await ledger.balances.create(balanceInput({ userId: "rd-1", balanceCents: 100n }));
    for (const [op, amount] of [["credit", 10n], ["debit", 5n], ["credit", 20n], ["debit", 1n]] as const) {
      if (op === "credit") await ledger.movements.credit({ balanceId: b.id, amountCents: amount, metadata: {} });
      else await ledger.movements.debit({ balanceId: b.id, amountCents: amount, allowNegative: false, metadata: {} });
    }
    const all = await ledger.reads.listTransactions({ balanceId: b.id }, {}, page());
    expect(all.total).toBe(5);
    expect(all.items.map((t) => t.sequence)).toEqual([5n, 4n, 3n, 2n, 1n]);
    expect(all.items[0]).toMatchObject({ transactionType: "debit", amountCents: 1n, balanceAfterCents: 124n, accountBalanceId: b.id });

    const credits = await ledger.reads.listTransactions({ balanceId: b.id }, { transactionType: "credit" }, page());
    expect(credits).toMatchObject({ total: 2 });
    expect(credits.items.map((t) => t.amountCents)).toEqual([20n, 10n]);

    const p2 = await ledger.reads.listTransactions({ balanceId: b.id }, {}, page(2, 2));
    expect(p2.total).toBe(5);
    expect(p2.items.map((t) => t.sequence)).toEqual([3n, 2n]);
    expect((await ledger.reads.listTransactions({ balanceId: b.id }, {}, page(2, 9))).items).toEqual([]);

    // from/to are inclusive and match a record's own timestamp exactly.
    const third = all.items.find((t) => t.sequence === 3n)!;
    const window = await ledger.reads.listTransactions({ balanceId: b.id }, { from: third.createdAt, to: third.createdAt }, page());
    expect(window.items.map((t) => t.id)).toContain(third.id);
    const none = await ledger.reads.listTransactions({ balanceId: b.id }, { from: new Date(Date.now() + 60_000) }, page());
    expect(none).toEqual({ items: [], total: 0 });
  });

  it("hides another owner's balance and checks its input", async () => {
    const b = await ledger.balances.create(balanceInput({ userId: "rd-owner", balanceCents: 1n }));
    expect((await ledger.reads.listTransactions({ balanceId: b.id, ownerId: "rd-owner" }, {}, page())).total).toBe(1);
    expect((await refusal(ledger.reads.listTransactions({ balanceId: b.id, ownerId: "other" }, {}, page()))).reason).toBe("NOT_FOUND");
    expect((await refusal(ledger.reads.listTransactions({ balanceId: "bal_none" }, {}, page()))).reason).toBe("NOT_FOUND");
    const cases: Array<[() => Promise<unknown>, string]> = [
      [() => ledger.reads.listTransactions({ balanceId: b.id }, { transactionType: "gift" as never }, page()), "transaction_type"],
      [() => ledger.reads.listTransactions({ balanceId: b.id }, {}, page(0)), "limit"],
      [() => ledger.reads.listTransactions({ balanceId: b.id }, {}, page(1001)), "limit"],
      [() => ledger.reads.listTransactions({ balanceId: b.id }, {}, page(10, 0)), "page"],
      [() => ledger.reads.listTransactions({ balanceId: b.id }, { from: new Date(2), to: new Date(1) }, page()), "from"],
      [() => ledger.reads.listTransactions({ balanceId: b.id }, { from: new Date(NaN) }, page()), "from"],
      [() => ledger.reads.listTransactions({ userId: "rd-owner", currency: "usd" }, {}, page()), "currency"],
      [() => ledger.reads.listTransactions({ userId: "" }, {}, page()), "user_id"],
    ];
    for (const [call, field] of cases) {
      const err = await refusal(call());
      expect(err.reason).toBe("VALIDATION_FAILED");
      expect(err.details.field).toBe(field);
    }
  });

  it("lists all of a user's transactions across balances, newest first, optionally by currency", async () => {
    const usd = await ledger.balances.create(balanceInput({ userId: "rd-user", balanceCents: 10n }));
    await sleep(5);
    const eur = await ledger.balances.create(balanceInput({ userId: "rd-user", balanceCents: 20n, currency: "EUR" }));
    await sleep(5);
    await ledger.movements.credit({ balanceId: usd.id, amountCents: 1n, metadata: {} });
    await sleep(5);
    await ledger.movements.debit({ balanceId: eur.id, amountCents: 2n, allowNegative: false, metadata: {} });
    await ledger.balances.create(balanceInput({ userId: "rd-someone-else", balanceCents: 99n }));

    const all = await ledger.reads.listTransactions({ userId: "rd-user" }, {}, page());
    expect(all.total).toBe(4);
    expect(all.items.map((t) => [t.currency, t.transactionType, t.amountCents])).toEqual([
      ["EUR", "debit", 2n],
      ["USD", "credit", 1n],
      ["EUR", "adjustment", 20n],
      ["USD", "adjustment", 10n],
    ]);
    const eurOnly = await ledger.reads.listTransactions({ userId: "rd-user", currency: "EUR" }, { transactionType: "debit" }, page());
    expect(eurOnly.items.map((t) => t.accountBalanceId)).toEqual([eur.id]);
    expect(eurOnly.total).toBe(1);
  });
});

describe("totals", () => {
  it("sums per currency and type, never across currencies, counting only active unexpired balances by default", async () => {
    const u = "rd-totals";
    await ledger.balances.create(balanceInput({ userId: u, balanceCents: 100n, currency: "EUR" }));
    await ledger.balances.create(balanceInput({ userId: u, balanceCents: 50n, currency: "EUR", balanceType: "promotional" }));
    await ledger.balances.create(balanceInput({ userId: u, balanceCents: 7n, currency: "JPY" }));
    await ledger.balances.create(balanceInput({ userId: u, balanceCents: 1_000n, currency: "USD" }));
    await ledger.balances.create(balanceInput({ userId: u, balanceCents: 5n, currency: "USD", status: "suspended" }));
    const lapsing = await ledger.balances.create(balanceInput({ userId: u, balanceCents: 9n, currency: "USD", expiresAt: new Date(Date.now() + 100) }));
    await sleep(150); // now past expires_at, not yet swept: it no longer counts

    const t = await ledger.reads.totals({ userId: u });
    expect(t).toEqual({
      currency: "EUR",
      totalBalanceCents: 150n,
      balanceCount: 2n,
      byCurrency: [
        { currency: "EUR", totalBalanceCents: 150n, balanceCount: 2n },
        { currency: "JPY", totalBalanceCents: 7n, balanceCount: 1n },
        { currency: "USD", totalBalanceCents: 1_000n, balanceCount: 1n },
      ],
      byType: [
        { balanceType: "general", currency: "EUR", totalBalanceCents: 100n, balanceCount: 1n },
        { balanceType: "promotional", currency: "EUR", totalBalanceCents: 50n, balanceCount: 1n },
        { balanceType: "general", currency: "JPY", totalBalanceCents: 7n, balanceCount: 1n },
        { balanceType: "general", currency: "USD", totalBalanceCents: 1_000n, balanceCount: 1n },
      ],
    });

    const usd = await ledger.reads.totals({ userId: u, currency: "USD" });
    expect(usd).toMatchObject({ currency: "USD", totalBalanceCents: 1_000n, balanceCount: 1n });
    expect(usd.byCurrency).toEqual([{ currency: "USD", totalBalanceCents: 1_000n, balanceCount: 1n }]);
    // A status filter replaces the default rule; past its expires_at a balance is expired, swept or not.
    const suspended = await ledger.reads.totals({ userId: u, status: "suspended" });
    expect(suspended).toMatchObject({ currency: "USD", totalBalanceCents: 5n, balanceCount: 1n });
    const active = await ledger.reads.totals({ userId: u, status: "active", currency: "USD" });
    expect(active).toMatchObject({ totalBalanceCents: 1_000n, balanceCount: 1n });
    const expired = await ledger.reads.totals({ userId: u, status: "expired" });
    expect(expired).toMatchObject({ currency: "USD", totalBalanceCents: 9n, balanceCount: 1n });
    const [stored] = await sql(db.url, "select status from account_balances where id = $1", [lapsing.id]);
    expect(stored!.status).toBe("active");
    expect((await ledger.reads.totals({ userId: u, balanceType: "promotional" })).byType).toHaveLength(1);
  });

  it("breaks a tie alphabetically, answers USD with zero for a user without balances, checks filters", async () => {
    await ledger.balances.create(balanceInput({ userId: "rd-tie", balanceCents: 3n, currency: "GBP" }));
    await ledger.balances.create(balanceInput({ userId: "rd-tie", balanceCents: 4n, currency: "CHF" }));
    expect(await ledger.reads.totals({ userId: "rd-tie" })).toMatchObject({ currency: "CHF", totalBalanceCents: 4n, balanceCount: 1n });
    expect(await ledger.reads.totals({ userId: "rd-nobody" })).toEqual({
      currency: "USD",
      totalBalanceCents: 0n,
      balanceCount: 0n,
      byCurrency: [],
      byType: [],
    });
    expect(await ledger.reads.totals({ userId: "rd-tie", currency: "EUR" })).toMatchObject({ currency: "EUR", totalBalanceCents: 0n, balanceCount: 0n });
    expect((await refusal(ledger.reads.totals({ userId: "rd-tie", currency: "XXQ" }))).details.field).toBe("currency");
    expect((await refusal(ledger.reads.totals({ userId: "rd-tie", status: "gone" as never }))).details.field).toBe("status");
  });

  it("adds large balances exactly up to ±(2^53-1), and refuses a total beyond it", async () => {
    const max = 9_007_199_254_740_991n;
    await ledger.balances.create(balanceInput({ userId: "rd-big", balanceCents: max - 10n }));
    await ledger.balances.create(balanceInput({ userId: "rd-big", balanceCents: 10n }));
    expect((await ledger.reads.totals({ userId: "rd-big" })).totalBalanceCents).toBe(max);
    await ledger.balances.create(balanceInput({ userId: "rd-big", balanceCents: 1n, balanceType: "credits" }));
    const err = await refusal(ledger.reads.totals({ userId: "rd-big" }));
    expect(err.reason).toBe("AMOUNT_OUT_OF_RANGE");
    expect(err.message).toMatch(/currency or balance_type filter/);
    // Per type each fits, and a filtered question is answered.
    expect((await ledger.reads.totals({ userId: "rd-big", balanceType: "general" })).totalBalanceCents).toBe(max);
  });
});

describe("statistics", () => {
  it("computes the numbers over all history and over a window", async () => {
    const b = await ledger.balances.create(balanceInput({ userId: "rd-stats", balanceCents: 1_000n, currency: "EUR" }));
    const c1 = await ledger.movements.credit({ balanceId: b.id, amountCents: 10n, metadata: {} });
    await ledger.movements.credit({ balanceId: b.id, amountCents: 15n, metadata: {} });
    await ledger.movements.debit({ balanceId: b.id, amountCents: 100n, allowNegative: false, metadata: {} });
    await ledger.movements.debit({ balanceId: b.id, amountCents: 1n, allowNegative: false, metadata: {} });
    const last = await ledger.movements.debit({ balanceId: b.id, amountCents: 2n, allowNegative: false, metadata: {} });

    const s = await ledger.reads.statistics(b.id, {});
    expect(s).toEqual({
      balanceId: b.id,
      currency: "EUR",
      currentBalanceCents: 922n,
      totalCreditsCents: 25n,
      totalDebitsCents: 103n,
      netChangeCents: 922n, // includes the opening adjustment
      creditCount: 2n,
      debitCount: 3n,
      transactionCount: 6n,
      averageCreditCents: 13n, // 12.5 rounds up
      averageDebitCents: 34n, // 34.33
      largestCreditCents: 15n,
      largestDebitCents: 100n,
      firstTransactionAt: b.createdAt,
      lastTransactionAt: last.transaction.createdAt,
    });

    const w = await ledger.reads.statistics(b.id, { from: c1.transaction.createdAt }, { ownerId: "rd-stats" });
    expect(w).toMatchObject({ transactionCount: 5n, netChangeCents: -78n, totalCreditsCents: 25n, currentBalanceCents: 922n });
    expect(w.firstTransactionAt).toEqual(c1.transaction.createdAt);

    const empty = await ledger.reads.statistics(b.id, { from: new Date(Date.now() + 60_000) });
    expect(empty).toMatchObject({
      transactionCount: 0n,
      totalCreditsCents: 0n,
      averageCreditCents: 0n,
      largestDebitCents: 0n,
      netChangeCents: 0n,
      currentBalanceCents: 922n,
      firstTransactionAt: null,
      lastTransactionAt: null,
    });
    expect((await refusal(ledger.reads.statistics(b.id, {}, { ownerId: "other" }))).reason).toBe("NOT_FOUND");
    expect((await refusal(ledger.reads.statistics("bal_none", {}))).reason).toBe("NOT_FOUND");
  });

  it("counts an expiration as a debit", async () => {
    const b = await ledger.balances.create(balanceInput({ userId: "rd-stats-exp", balanceCents: 40n, expiresAt: new Date(Date.now() - 1000) }));
    await ledger.expiry.sweepExpired();
    expect(await ledger.reads.statistics(b.id, {})).toMatchObject({
      currentBalanceCents: 0n,
      debitCount: 1n,
      totalDebitsCents: 40n,
      netChangeCents: 0n,
      transactionCount: 2n,
    });
  });
});

describe("listExpiring", () => {
  it("lists active, positive balances expiring within the window, soonest first", async () => {
    await sql(db.url, "update account_balances set status = 'suspended' where status = 'active' and expires_at is not null");
    const day = 86_400_000;
    const soon = await ledger.balances.create(balanceInput({ userId: "rd-exp", balanceCents: 5n, expiresAt: new Date(Date.now() + 2 * day) }));
    const sooner = await ledger.balances.create(balanceInput({ userId: "rd-exp-2", balanceCents: 5n, currency: "EUR", expiresAt: new Date(Date.now() + day) }));
    await ledger.balances.create(balanceInput({ userId: "rd-exp", balanceCents: 5n, expiresAt: new Date(Date.now() + 30 * day) }));
    await ledger.balances.create(balanceInput({ userId: "rd-exp", balanceCents: 0n, expiresAt: new Date(Date.now() + day) }));
    await ledger.balances.create(balanceInput({ userId: "rd-exp", balanceCents: 5n, status: "suspended", expiresAt: new Date(Date.now() + day) }));
    await ledger.balances.create(balanceInput({ userId: "rd-exp", balanceCents: 5n, expiresAt: new Date(Date.now() - 1000) }));
    const promo = await ledger.balances.create(
      balanceInput({ userId: "rd-exp", balanceCents: 5n, balanceType: "promotional", expiresAt: new Date(Date.now() + 3 * day) }),
    );

    const week = await ledger.reads.listExpiring({ withinDays: 7 }, page());
    expect(week.items.map((b) => b.id)).toEqual([sooner.id, soon.id, promo.id]);
    expect(week.total).toBe(3);
    expect((await ledger.reads.listExpiring({ withinDays: 7 }, page(1, 2))).items.map((b) => b.id)).toEqual([soon.id]);
    expect((await ledger.reads.listExpiring({ withinDays: 7, currency: "EUR" }, page())).items.map((b) => b.id)).toEqual([sooner.id]);
    expect((await ledger.reads.listExpiring({ withinDays: 7, balanceType: "promotional" }, page())).items.map((b) => b.id)).toEqual([promo.id]);
    expect((await ledger.reads.listExpiring({ withinDays: 60 }, page())).total).toBe(4);
    expect((await refusal(ledger.reads.listExpiring({ withinDays: 0 }, page()))).details.field).toBe("within_days");
  });
});
