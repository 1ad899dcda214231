import pg from "pg";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { LedgerError, openLedger, type CreateBalanceInput, type Ledger } from "./index.js";
import { createTestDatabase, type TestDatabase } from "./testing.js";
import { sql } from "./test-support/sql.js";

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

const input = (overrides: Partial<CreateBalanceInput> = {}): CreateBalanceInput => ({
  userId: "user-1",
  balanceType: "general",
  balanceCents: 0n,
  currency: "USD",
  status: "active",
  metadata: {},
  ...overrides,
});

interface TxnRow {
  transaction_type: string;
  amount_cents: string;
  balance_before_cents: string;
  balance_after_cents: string;
  sequence: string;
  currency: string;
}

const transactionsOf = (balanceId: string) =>
  sql<TxnRow>(
    db.url,
    `select transaction_type, amount_cents, balance_before_cents, balance_after_cents, sequence, currency
       from account_transactions where account_balance_id = $1 order by sequence`,
    [balanceId],
  );

const countBalances = async (userId: string): Promise<number> =>
  Number((await sql<{ n: string }>(db.url, "select count(*) as n from account_balances where user_id = $1", [userId]))[0]?.n);

async function refusal(promise: Promise<unknown>): Promise<LedgerError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(LedgerError);
    return err as LedgerError;
  }
  throw new Error("expected a LedgerError");
}

describe("create", () => {
  it("writes a zero balance without any transaction", async () => {
    const balance = await ledger.balances.create(input({ userId: "create-zero", metadata: { tier: "gold" } }));
    expect(balance.id).toMatch(/^bal_[0-9A-HJKMNP-TV-Z]{26}$/);
    expect(balance).toMatchObject({
      userId: "create-zero",
      balanceCents: 0n,
      currency: "USD",
      status: "active",
      version: 1n,
      metadata: { tier: "gold" },
      organizationId: null,
      referenceCode: null,
      expiresAt: null,
    });
    expect(await transactionsOf(balance.id)).toEqual([]);
    const stored = await ledger.balances.get(balance.id);
    expect(stored).toMatchObject({ id: balance.id, balanceCents: 0n, version: 1n, metadata: { tier: "gold" } });
  });

  it("records a non-zero opening balance as adjustment #1 from 0", async () => {
    const expiresAt = new Date(Date.now() + 86_400_000);
    const balance = await ledger.balances.create(
      input({ userId: "create-open", balanceCents: 12_345n, currency: "EUR", balanceType: "credits", expiresAt }),
    );
    expect(balance.balanceCents).toBe(12_345n);
    expect(balance.expiresAt?.getTime()).toBe(expiresAt.getTime());
    expect(await transactionsOf(balance.id)).toEqual([
      {
        transaction_type: "adjustment",
        amount_cents: "12345",
        balance_before_cents: "0",
        balance_after_cents: "12345",
        sequence: "1",
        currency: "EUR",
      },
    ]);
  });

  it("keeps the largest safe amount exact", async () => {
    const balance = await ledger.balances.create(input({ userId: "create-max", balanceCents: 9_007_199_254_740_991n }));
    expect((await ledger.balances.get(balance.id))?.balanceCents).toBe(9_007_199_254_740_991n);
    const err = await refusal(ledger.balances.create(input({ userId: "create-max", balanceCents: 9_007_199_254_740_992n })));
    expect(err.reason).toBe("AMOUNT_OUT_OF_RANGE");
    expect(await countBalances("create-max")).toBe(1);
  });

  it("refuses an unknown or lower-case currency and writes nothing", async () => {
    for (const currency of ["XYZ", "usd", "US", ""]) {
      const err = await refusal(ledger.balances.create(input({ userId: "create-bad-ccy", currency, balanceCents: 10n })));
      expect(err.reason).toBe("VALIDATION_FAILED");
      expect(err.details).toEqual({ field: "currency" });
    }
    expect(await countBalances("create-bad-ccy")).toBe(0);
    const txns = await sql(db.url, "select 1 from account_transactions t join account_balances b on b.id = t.account_balance_id where b.user_id = 'create-bad-ccy'");
    expect(txns).toEqual([]);
  });

  it("refuses bad enums, a negative opening balance and non-string metadata", async () => {
    const cases: Array<[Partial<CreateBalanceInput>, string]> = [
      [{ balanceType: "gift" as never }, "balance_type"],
      [{ status: "open" as never }, "status"],
      [{ balanceCents: -1n }, "balance_cents"],
      [{ metadata: { n: 1 } as never }, "metadata"],
      [{ userId: "" }, "user_id"],
    ];
    for (const [override, field] of cases) {
      const err = await refusal(ledger.balances.create(input({ userId: "create-invalid", ...override })));
      expect(err.reason, field).toBe("VALIDATION_FAILED");
      expect(err.details.field).toBe(field);
    }
    expect(await countBalances("create-invalid")).toBe(0);
  });

  it("refuses a second balance with the same reference_code for the same user, currency and type", async () => {
    const first = await ledger.balances.create(input({ userId: "dup", referenceCode: "wallet-1", balanceCents: 50n }));
    const err = await refusal(ledger.balances.create(input({ userId: "dup", referenceCode: "wallet-1", balanceCents: 70n })));
    expect(err.reason).toBe("DUPLICATE_BALANCE");
    expect(err.message).not.toMatch(/insert|account_balances|constraint/i);
    expect(await countBalances("dup")).toBe(1);
    // The opening transaction of the refused balance was rolled back with it.
    const txns = await sql(db.url, "select t.id from account_transactions t join account_balances b on b.id = t.account_balance_id where b.user_id = 'dup'");
    expect(txns).toHaveLength(1);
    expect(await transactionsOf(first.id)).toHaveLength(1);

    // Same code in another currency, type or for another user is a different balance.
    await ledger.balances.create(input({ userId: "dup", referenceCode: "wallet-1", currency: "EUR" }));
    await ledger.balances.create(input({ userId: "dup", referenceCode: "wallet-1", balanceType: "promotional" }));
    await ledger.balances.create(input({ userId: "dup-2", referenceCode: "wallet-1" }));
    // Without a reference_code there is no uniqueness.
    await ledger.balances.create(input({ userId: "dup" }));
    await ledger.balances.create(input({ userId: "dup" }));
    expect(await countBalances("dup")).toBe(5);
  });
});

describe("times", () => {
  it("stamps creates and updates with the database's clock, not the app server's", async () => {
    const [{ ms: dbBefore }] = await sql<{ ms: string }>(db.url, "select (extract(epoch from clock_timestamp()) * 1000)::bigint::text as ms");
    // This process's clock a year behind: nothing the ledger writes may follow it.
    vi.useFakeTimers({ toFake: ["Date"], now: Date.now() - 365 * 86_400_000 });
    let created, updated, debited;
    try {
      created = await ledger.balances.create(input({ userId: "clock-1", balanceCents: 100n }));
      updated = await ledger.balances.update(created.id, { metadata: { a: "b" } });
      debited = await ledger.movements.debit({ balanceId: created.id, amountCents: 1n, allowNegative: false, metadata: {} });
    } finally {
      vi.useRealTimers();
    }
    const floor = Number(dbBefore) - 1;
    expect(created.createdAt.getTime()).toBeGreaterThanOrEqual(floor);
    expect(updated.updatedAt.getTime()).toBeGreaterThanOrEqual(created.updatedAt.getTime());
    expect(debited.transaction.createdAt.getTime()).toBeGreaterThanOrEqual(updated.updatedAt.getTime());
    expect(debited.transaction.createdAt.getTime()).toBeLessThanOrEqual(Date.now() + 60_000);
    const rows = await sql<{ created_at: Date; updated_at: Date }>(db.url, "select created_at, updated_at from account_balances where id = $1", [created.id]);
    expect(rows[0]!.created_at.getTime()).toBe(created.createdAt.getTime());
    const opening = await sql<{ created_at: Date }>(db.url, "select created_at from account_transactions where account_balance_id = $1 and sequence = 1", [created.id]);
    expect(opening[0]!.created_at.getTime()).toBe(created.createdAt.getTime());
  });
});

describe("list", () => {
  const user = "lister";
  const ids: string[] = [];

  beforeAll(async () => {
    const specs: Array<Partial<CreateBalanceInput>> = [
      { currency: "USD", balanceType: "general", organizationId: "org-a" },
      { currency: "EUR", balanceType: "general", organizationId: "org-a", projectId: "p1" },
      { currency: "USD", balanceType: "credits", status: "suspended" },
      { currency: "USD", balanceType: "general", referenceCode: "ref-x" },
      { currency: "GBP", balanceType: "refund", organizationId: "org-b" },
    ];
    for (const spec of specs) ids.push((await ledger.balances.create(input({ userId: user, ...spec }))).id);
    await ledger.balances.create(input({ userId: "someone-else" }));
  });

  it("returns the user's balances oldest first with the total", async () => {
    const page = await ledger.balances.list({ userId: user }, { limit: 100, page: 1 });
    expect(page.total).toBe(5);
    expect(page.items.map((b) => b.id)).toEqual(ids);
  });

  it("pages with limit and page", async () => {
    const p1 = await ledger.balances.list({ userId: user }, { limit: 2, page: 1 });
    const p2 = await ledger.balances.list({ userId: user }, { limit: 2, page: 2 });
    const p3 = await ledger.balances.list({ userId: user }, { limit: 2, page: 3 });
    const p4 = await ledger.balances.list({ userId: user }, { limit: 2, page: 4 });
    expect([p1, p2, p3, p4].map((p) => p.total)).toEqual([5, 5, 5, 5]);
    expect([...p1.items, ...p2.items, ...p3.items].map((b) => b.id)).toEqual(ids);
    expect(p3.items).toHaveLength(1);
    expect(p4.items).toEqual([]);
  });

  it("filters by every field", async () => {
    const ids_ = async (filter: Parameters<Ledger["balances"]["list"]>[0]) =>
      (await ledger.balances.list(filter, { limit: 100, page: 1 })).items.map((b) => b.id);
    expect(await ids_({ userId: user, currency: "USD" })).toEqual([ids[0], ids[2], ids[3]]);
    expect(await ids_({ userId: user, balanceType: "general" })).toEqual([ids[0], ids[1], ids[3]]);
    expect(await ids_({ userId: user, status: "suspended" })).toEqual([ids[2]]);
    expect(await ids_({ userId: user, organizationId: "org-a" })).toEqual([ids[0], ids[1]]);
    expect(await ids_({ userId: user, projectId: "p1" })).toEqual([ids[1]]);
    expect(await ids_({ userId: user, referenceCode: "ref-x" })).toEqual([ids[3]]);
    expect(await ids_({ userId: user, currency: "USD", balanceType: "general", status: "active" })).toEqual([ids[0], ids[3]]);
    const filtered = await ledger.balances.list({ userId: user, currency: "USD" }, { limit: 1, page: 2 });
    expect(filtered).toMatchObject({ total: 3, items: [{ id: ids[2] }] });
  });

  it("refuses a bad page, limit or filter", async () => {
    for (const page of [
      { limit: 0, page: 1 },
      { limit: 1001, page: 1 },
      { limit: 10, page: 0 },
      { limit: 1.5, page: 1 },
    ]) {
      expect((await refusal(ledger.balances.list({ userId: user }, page))).reason).toBe("VALIDATION_FAILED");
    }
    expect((await refusal(ledger.balances.list({ userId: user, currency: "ABC" }, { limit: 1, page: 1 }))).reason).toBe(
      "VALIDATION_FAILED",
    );
  });
});

describe("ownership", () => {
  it("hides another user's balance: get is null, update and close are NOT_FOUND", async () => {
    const balance = await ledger.balances.create(input({ userId: "owner-a", metadata: { k: "v" } }));
    expect(await ledger.balances.get(balance.id, { ownerId: "owner-a" })).toMatchObject({ id: balance.id });
    expect(await ledger.balances.get(balance.id, { ownerId: "owner-b" })).toBeNull();
    expect(await ledger.balances.get("bal_does_not_exist")).toBeNull();

    const upd = await refusal(ledger.balances.update(balance.id, { metadata: { k: "stolen" } }, { ownerId: "owner-b" }));
    expect(upd.reason).toBe("NOT_FOUND");
    const cls = await refusal(ledger.balances.close(balance.id, { ownerId: "owner-b" }));
    expect(cls.reason).toBe("NOT_FOUND");
    expect((await refusal(ledger.balances.update("bal_missing", { status: "suspended" }))).reason).toBe("NOT_FOUND");

    const stored = await ledger.balances.get(balance.id);
    expect(stored).toMatchObject({ metadata: { k: "v" }, status: "active", version: 1n });
  });
});

describe("update and close", () => {
  it("changes metadata, status and expiry, incrementing version each time", async () => {
    const balance = await ledger.balances.create(input({ userId: "updater", metadata: { a: "1" } }));
    const v2 = await ledger.balances.update(balance.id, { metadata: { a: "2", b: "x" } }, { ownerId: "updater" });
    expect(v2).toMatchObject({ version: 2n, metadata: { a: "2", b: "x" }, status: "active" });
    expect(v2.updatedAt.getTime()).toBeGreaterThanOrEqual(balance.updatedAt.getTime());

    const v3 = await ledger.balances.update(balance.id, { status: "suspended" });
    expect(v3).toMatchObject({ version: 3n, status: "suspended" });

    const expiresAt = new Date("2030-01-01T00:00:00Z");
    const v4 = await ledger.balances.update(balance.id, { expiresAt, status: "active" });
    expect(v4).toMatchObject({ version: 4n, status: "active" });
    expect(v4.expiresAt?.toISOString()).toBe("2030-01-01T00:00:00.000Z");

    // No actual change: no new version.
    const same = await ledger.balances.update(balance.id, { metadata: { b: "x", a: "2" }, expiresAt });
    expect(same.version).toBe(4n);

    const cleared = await ledger.balances.update(balance.id, { expiresAt: null });
    expect(cleared).toMatchObject({ version: 5n, expiresAt: null });

    const [row] = await sql<{ version: string; status: string; metadata: unknown }>(
      db.url,
      "select version, status, metadata from account_balances where id = $1",
      [balance.id],
    );
    expect(row).toEqual({ version: "5", status: "active", metadata: { a: "2", b: "x" } });
  });

  it("refuses to close a non-zero balance and leaves it unchanged", async () => {
    const balance = await ledger.balances.create(input({ userId: "closer", balanceCents: 250n }));
    const err = await refusal(ledger.balances.close(balance.id));
    expect(err.reason).toBe("BALANCE_NOT_EMPTY");
    expect(err.details).toEqual({ balance_cents: "250" });
    const viaUpdate = await refusal(ledger.balances.update(balance.id, { status: "closed", metadata: { x: "y" } }));
    expect(viaUpdate.reason).toBe("BALANCE_NOT_EMPTY");
    const [row] = await sql(db.url, "select status, version, balance_cents, metadata from account_balances where id = $1", [
      balance.id,
    ]);
    expect(row).toEqual({ status: "active", version: "1", balance_cents: "250", metadata: {} });
  });

  it("refuses to set a balance that holds money expired by hand (its money could never move again), but not a zero or negative one", async () => {
    const rich = await ledger.balances.create(input({ userId: "expirer", balanceCents: 500n }));
    const err = await refusal(ledger.balances.update(rich.id, { status: "expired" }));
    expect(err.reason).toBe("BALANCE_NOT_EMPTY");
    expect(err.message).toMatch(/set expires_at/);
    expect(err.details).toEqual({ balance_cents: "500" });
    const [row] = await sql(db.url, "select status, version, balance_cents from account_balances where id = $1", [rich.id]);
    expect(row).toEqual({ status: "active", version: "1", balance_cents: "500" });
    expect((await refusal(ledger.balances.create(input({ userId: "expirer", balanceCents: 700n, status: "expired" })))).reason).toBe("BALANCE_NOT_EMPTY");
    expect(await sql(db.url, "select id from account_balances where user_id = 'expirer'")).toHaveLength(1);

    const empty = await ledger.balances.create(input({ userId: "expirer", balanceCents: 0n, referenceCode: "empty" }));
    expect((await ledger.balances.update(empty.id, { status: "expired" })).status).toBe("expired");
  });

  it("metadataOnly (an owner) may send the status and expiry it has, not change them; checked under the lock, nothing written on refusal", async () => {
    const expiresAt = new Date("2031-05-01T00:00:00Z");
    const b = await ledger.balances.create(input({ userId: "meta-only", expiresAt }));
    const same = await ledger.balances.update(b.id, { status: "active", expiresAt: new Date(expiresAt), metadata: { a: "1" } }, { ownerId: "meta-only", metadataOnly: true });
    expect([same.version, same.metadata, same.expiresAt?.toISOString()]).toEqual([2n, { a: "1" }, expiresAt.toISOString()]);

    for (const patch of [{ status: "suspended" as const }, { expiresAt: null }, { expiresAt: new Date("2032-01-01T00:00:00Z") }]) {
      const err = await refusal(ledger.balances.update(b.id, { ...patch, metadata: { a: "2" } }, { ownerId: "meta-only", metadataOnly: true }));
      expect([JSON.stringify(patch), err.reason]).toEqual([JSON.stringify(patch), "FORBIDDEN"]);
    }
    const [row] = await sql(db.url, "select status, version, metadata, expires_at is not null as expiring from account_balances where id = $1", [b.id]);
    expect(row).toEqual({ status: "active", version: "2", metadata: { a: "1" }, expiring: true });

    // Without an expiry, "remove it" is no change either.
    const open = await ledger.balances.create(input({ userId: "meta-only", referenceCode: "open" }));
    const cleared = await ledger.balances.update(open.id, { expiresAt: null, metadata: { b: "1" } }, { ownerId: "meta-only", metadataOnly: true });
    expect([cleared.version, cleared.expiresAt]).toEqual([2n, null]);
  });

  it("reads a balance past its expires_at as expired before the sweeper has run: get, list, status filters, an update's answer", async () => {
    const u = "lapse-reader";
    const lapsing = await ledger.balances.create(input({ userId: u, balanceCents: 300n, expiresAt: new Date(Date.now() + 150) }));
    const lasting = await ledger.balances.create(input({ userId: u, balanceCents: 5n, expiresAt: new Date(Date.now() + 86_400_000) }));
    expect(lapsing.status).toBe("active");
    await new Promise((r) => setTimeout(r, 200));

    expect((await ledger.balances.get(lapsing.id))?.status).toBe("expired");
    expect((await ledger.balances.get(lasting.id))?.status).toBe("active");
    const all = await ledger.balances.list({ userId: u }, { limit: 10, page: 1 });
    expect(all.items.map((b) => [b.id, b.status])).toEqual([
      [lapsing.id, "expired"],
      [lasting.id, "active"],
    ]);
    const expired = await ledger.balances.list({ userId: u, status: "expired" }, { limit: 10, page: 1 });
    expect([expired.total, expired.items.map((b) => b.id)]).toEqual([1, [lapsing.id]]);
    const active = await ledger.balances.list({ userId: u, status: "active" }, { limit: 10, page: 1 });
    expect([active.total, active.items.map((b) => b.id)]).toEqual([1, [lasting.id]]);

    // An admin's change of its metadata answers what a read would say; the row still waits for the sweeper.
    const changed = await ledger.balances.update(lapsing.id, { metadata: { note: "x" } });
    expect([changed.status, changed.version, changed.balanceCents]).toEqual(["expired", 2n, 300n]);
    const [row] = await sql(db.url, "select status, version, balance_cents from account_balances where id = $1", [lapsing.id]);
    expect(row).toEqual({ status: "active", version: "2", balance_cents: "300" });

    // Moving the time on brings it back.
    const renewed = await ledger.balances.update(lapsing.id, { expiresAt: new Date(Date.now() + 86_400_000) });
    expect(renewed.status).toBe("active");
    expect((await ledger.balances.get(lapsing.id))?.status).toBe("active");
  });

  it("an update of a balance another transaction holds for long answers UNAVAILABLE after the lock timeout, nothing written", async () => {
    const l = await openLedger({ databaseUrl: db.url, migrate: false, batching: { lockTimeoutMs: 200 } });
    const balance = await l.balances.create(input({ userId: "held-update" }));
    const holder = new pg.Client({ connectionString: db.url });
    await holder.connect();
    try {
      await holder.query("begin");
      await holder.query("select 1 from account_balances where id = $1 for update", [balance.id]);
      // Without the timeout this would wait for the holder, and the test time out.
      const err = await refusal(l.balances.update(balance.id, { metadata: { a: "1" } }));
      expect(err.reason).toBe("UNAVAILABLE");
      expect(err.message).toMatch(/nothing was written/);
      await holder.query("rollback");
      expect((await l.balances.update(balance.id, { metadata: { a: "1" } })).version).toBe(2n);
    } finally {
      await holder.end().catch(() => {});
      await l.close();
    }
  });

  it("a create whose idempotency key another transaction holds answers UNAVAILABLE after the lock timeout, nothing written", async () => {
    const l = await openLedger({ databaseUrl: db.url, migrate: false, batching: { lockTimeoutMs: 200 } });
    const holder = new pg.Client({ connectionString: db.url });
    await holder.connect();
    try {
      await holder.query("begin");
      await holder.query(
        "insert into idempotency_keys (scope, key, fingerprint, operation, status, created_at, expires_at) values ('held-scope', 'held-key', 'fp', 'create_balance', 'in_flight', now(), now() + interval '1 day')",
      );
      const err = await refusal(l.balances.create(input({ userId: "held-create" }), { idempotency: { scope: "held-scope", key: "held-key", fingerprint: "fp" } }));
      expect(err.reason).toBe("UNAVAILABLE");
      expect(await sql(db.url, "select id from account_balances where user_id = 'held-create'")).toHaveLength(0);
    } finally {
      await holder.query("rollback").catch(() => {});
      await holder.end().catch(() => {});
      await l.close();
    }
  });

  it("refuses text PostgreSQL cannot store as given (a lone surrogate) with VALIDATION_FAILED, not INTERNAL", async () => {
    const balance = await ledger.balances.create(input({ userId: "surrogate" }));
    const err = await refusal(ledger.balances.update(balance.id, { metadata: { k: "x\ud800" } }));
    expect(err.reason).toBe("VALIDATION_FAILED");
    expect(err.message).toMatch(/lone surrogate/);
    expect((await refusal(ledger.balances.create(input({ userId: "surrogate", referenceCode: "r\udc00" })))).reason).toBe("VALIDATION_FAILED");
    // A whole pair is text like any other.
    expect((await ledger.balances.update(balance.id, { metadata: { k: "x\ud83d\ude00" } })).metadata).toEqual({ k: "x😀" });
  });

  it("closes a zero balance, which then cannot be reopened", async () => {
    const balance = await ledger.balances.create(input({ userId: "closer" }));
    const closed = await ledger.balances.close(balance.id, { ownerId: "closer" });
    expect(closed).toMatchObject({ status: "closed", version: 2n });
    // Closing again changes nothing.
    expect(await ledger.balances.close(balance.id)).toMatchObject({ status: "closed", version: 2n });
    const err = await refusal(ledger.balances.update(balance.id, { status: "active" }));
    expect(err.reason).toBe("BALANCE_NOT_ACTIVE");
    expect((await ledger.balances.get(balance.id))?.status).toBe("closed");
  });

  it("serialises concurrent updates on the row lock: no lost version", async () => {
    const balance = await ledger.balances.create(input({ userId: "racer" }));
    await Promise.all(
      Array.from({ length: 8 }, (_, i) => ledger.balances.update(balance.id, { metadata: { n: String(i) } })),
    );
    const stored = await ledger.balances.get(balance.id);
    // Each of the 8 updates sets a different metadata value than the row holds: 8 new versions.
    expect(stored?.version).toBe(9n);
  });
});
