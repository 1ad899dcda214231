import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openLedger, type IdempotencyKey, type Ledger } from "./index.js";
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

const key = (k: string, fingerprint = "fp-1", scope = "caller-1"): IdempotencyKey => ({ scope, key: k, fingerprint });
const keyRow = async (scope: string, k: string) =>
  (
    await sql<{ fingerprint: string; operation: string; status: string; ttl_hours: string }>(
      db.url,
      `select fingerprint, operation, status, round(extract(epoch from expires_at - created_at) / 3600)::text as ttl_hours
         from idempotency_keys where scope = $1 and key = $2`,
      [scope, k],
    )
  )[0];

describe("idempotent movements", () => {
  it("the same key and request returns the first result again and writes nothing", async () => {
    const b = await ledger.balances.create(balanceInput({ userId: "idem-1", balanceCents: 100n }));
    const first = await ledger.movements.debit({ balanceId: b.id, amountCents: 30n, allowNegative: false, metadata: {}, idempotency: key("k1") });
    expect(first.replayed).toBe(false);
    // Later changes do not alter what the key replays.
    await ledger.movements.credit({ balanceId: b.id, amountCents: 5n, metadata: {} });

    const again = await ledger.movements.debit({ balanceId: b.id, amountCents: 30n, allowNegative: false, metadata: {}, idempotency: key("k1") });
    expect(again.replayed).toBe(true);
    expect(again.balance).toEqual(first.balance);
    expect(again.transaction).toEqual(first.transaction);
    expect(again.balance.balanceCents).toBe(70n);

    expect((await transactionsOf(db.url, b.id)).map((t) => t.transaction_type)).toEqual(["adjustment", "debit", "credit"]);
    expect(await balanceRowOf(db.url, b.id)).toMatchObject({ balance_cents: "75", version: "3" });
    expect(await keyRow("caller-1", "k1")).toEqual({ fingerprint: "fp-1", operation: "debit", status: "done", ttl_hours: "24" });
  });

  it("the same key with a different request is IDEMPOTENCY_KEY_REUSED", async () => {
    const b = await ledger.balances.create(balanceInput({ userId: "idem-2", balanceCents: 100n }));
    await ledger.movements.credit({ balanceId: b.id, amountCents: 1n, metadata: {}, idempotency: key("k2") });
    const different = await refusal(
      ledger.movements.credit({ balanceId: b.id, amountCents: 2n, metadata: {}, idempotency: key("k2", "fp-other") }),
    );
    expect(different.reason).toBe("IDEMPOTENCY_KEY_REUSED");
    // Another operation under the same key and fingerprint is another request too.
    const otherOp = await refusal(
      ledger.movements.debit({ balanceId: b.id, amountCents: 1n, allowNegative: false, metadata: {}, idempotency: key("k2") }),
    );
    expect(otherOp.reason).toBe("IDEMPOTENCY_KEY_REUSED");
    expect(await transactionsOf(db.url, b.id)).toHaveLength(2);
    // Keys are per scope: another caller's identical key is its own.
    const other = await ledger.movements.credit({ balanceId: b.id, amountCents: 1n, metadata: {}, idempotency: key("k2", "fp-1", "caller-2") });
    expect(other.replayed).toBe(false);
    expect(await transactionsOf(db.url, b.id)).toHaveLength(3);
  });

  it("a refusal is not stored: the key is free and a retry runs afresh", async () => {
    const b = await ledger.balances.create(balanceInput({ userId: "idem-3", balanceCents: 5n }));
    const err = await refusal(
      ledger.movements.debit({ balanceId: b.id, amountCents: 10n, allowNegative: false, metadata: {}, idempotency: key("k3") }),
    );
    expect(err.reason).toBe("INSUFFICIENT_BALANCE");
    expect(await keyRow("caller-1", "k3")).toBeUndefined();
    await ledger.movements.credit({ balanceId: b.id, amountCents: 5n, metadata: {} });
    const retry = await ledger.movements.debit({ balanceId: b.id, amountCents: 10n, allowNegative: false, metadata: {}, idempotency: key("k3") });
    expect(retry.replayed).toBe(false);
    expect(retry.balance.balanceCents).toBe(0n);
  });

  it("20 concurrent calls with one key write exactly one transaction and all return it", async () => {
    const b = await ledger.balances.create(balanceInput({ userId: "idem-4", balanceCents: 0n }));
    const results = await Promise.all(
      Array.from({ length: 20 }, () => ledger.movements.credit({ balanceId: b.id, amountCents: 7n, metadata: {}, idempotency: key("k4") })),
    );
    expect(new Set(results.map((r) => r.transaction.id)).size).toBe(1);
    expect(results.filter((r) => !r.replayed)).toHaveLength(1);
    expect(results.every((r) => r.balance.balanceCents === 7n && r.balance.version === 2n)).toBe(true);
    expect(await transactionsOf(db.url, b.id)).toHaveLength(1);
    expect(await balanceRowOf(db.url, b.id)).toMatchObject({ balance_cents: "7", version: "2" });
  });

  it("concurrent same-key calls that are all refused write nothing and leave the key free", async () => {
    const b = await ledger.balances.create(balanceInput({ userId: "idem-5", balanceCents: 1n }));
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, () =>
        ledger.movements.debit({ balanceId: b.id, amountCents: 2n, allowNegative: false, metadata: {}, idempotency: key("k5") }),
      ),
    );
    expect(results.map((r) => (r.status === "rejected" ? (r.reason as { reason: string }).reason : "ok"))).toEqual(
      Array.from({ length: 10 }, () => "INSUFFICIENT_BALANCE"),
    );
    expect(await keyRow("caller-1", "k5")).toBeUndefined();
    expect(await balanceRowOf(db.url, b.id)).toMatchObject({ balance_cents: "1", version: "1" });
    expect(await transactionsOf(db.url, b.id)).toHaveLength(1);
  });

  it("an expired key is taken over; purgeExpired deletes only expired keys", async () => {
    const b = await ledger.balances.create(balanceInput({ userId: "idem-6", balanceCents: 0n }));
    await ledger.movements.credit({ balanceId: b.id, amountCents: 1n, metadata: {}, idempotency: key("k6") });
    await ledger.movements.credit({ balanceId: b.id, amountCents: 1n, metadata: {}, idempotency: key("k6-keep") });
    await sql(db.url, "update idempotency_keys set expires_at = now() - interval '1 second' where key = 'k6'");
    const fresh = await ledger.movements.credit({ balanceId: b.id, amountCents: 1n, metadata: {}, idempotency: key("k6", "fp-new") });
    expect(fresh.replayed).toBe(false);
    expect(await keyRow("caller-1", "k6")).toMatchObject({ fingerprint: "fp-new", status: "done" });
    expect(await transactionsOf(db.url, b.id)).toHaveLength(3);

    await sql(db.url, "update idempotency_keys set expires_at = now() - interval '1 second' where key in ('k6', 'k1')");
    expect(await ledger.idempotency.purgeExpired()).toBe(2);
    expect(await keyRow("caller-1", "k6")).toBeUndefined();
    expect(await keyRow("caller-1", "k6-keep")).toBeDefined();
    expect(await ledger.idempotency.purgeExpired()).toBe(0);
  });

  it("refuses a lifetime under 24 h", async () => {
    const err = await refusal(openLedger({ databaseUrl: db.url, idempotencyTtlSeconds: 60 }));
    expect(err.reason).toBe("VALIDATION_FAILED");
  });
});

describe("idempotent balance changes", () => {
  it("create with a key returns the first balance on replay and creates one", async () => {
    const input = balanceInput({ userId: "idem-create", balanceCents: 40n, metadata: { a: "1" } });
    const first = await ledger.balances.create(input, { idempotency: key("c1") });
    const again = await ledger.balances.create(input, { idempotency: key("c1") });
    expect(again).toEqual(first);
    const rows = await sql(db.url, "select id from account_balances where user_id = 'idem-create'");
    expect(rows).toEqual([{ id: first.id }]);
    expect(await transactionsOf(db.url, first.id)).toHaveLength(1);
    const reused = await refusal(ledger.balances.create({ ...input, balanceCents: 41n }, { idempotency: key("c1", "fp-2") }));
    expect(reused.reason).toBe("IDEMPOTENCY_KEY_REUSED");
    // Concurrent creates with one key: one balance.
    const many = await Promise.all(
      Array.from({ length: 10 }, () => ledger.balances.create(balanceInput({ userId: "idem-create-2" }), { idempotency: key("c2") })),
    );
    expect(new Set(many.map((b) => b.id)).size).toBe(1);
    expect(await sql(db.url, "select id from account_balances where user_id = 'idem-create-2'")).toHaveLength(1);
  });

  it("update and close with a key replay their first result", async () => {
    const b = await ledger.balances.create(balanceInput({ userId: "idem-update" }));
    const u1 = await ledger.balances.update(b.id, { metadata: { v: "1" } }, { idempotency: key("u1") });
    await ledger.balances.update(b.id, { metadata: { v: "2" } });
    const u2 = await ledger.balances.update(b.id, { metadata: { v: "1" } }, { idempotency: key("u1") });
    expect(u2).toEqual(u1);
    expect((await ledger.balances.get(b.id))?.metadata).toEqual({ v: "2" });
    const c1 = await ledger.balances.close(b.id, { idempotency: key("x1"), ownerId: "idem-update" });
    const c2 = await ledger.balances.close(b.id, { idempotency: key("x1"), ownerId: "idem-update" });
    expect(c2).toEqual(c1);
    expect(c1.status).toBe("closed");
    expect((await refusal(ledger.balances.close(b.id, { idempotency: key("u1") }))).reason).toBe("IDEMPOTENCY_KEY_REUSED");
  });
});
