import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { openLedger, type IdempotencyKey, type Ledger, type MovementOutcome, type MovementResult } from "./index.js";
import { createTestDatabase, type TestDatabase } from "./testing.js";
import { sql } from "./test-support/sql.js";
import { balanceInput, balanceRowOf, refusal, transactionsOf } from "./test-support/ledger.js";

let db: TestDatabase;
let ledger: Ledger;
const batches: number[] = [];
const outcomes: Array<[string, MovementOutcome]> = [];
const logs: string[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  ledger = await openLedger({
    databaseUrl: db.url,
    poolMax: 10,
    onBatch: (n) => batches.push(n),
    onMovement: (type, outcome) => outcomes.push([type, outcome]),
    log: (msg) => {
      if (msg.includes(" batch ") || msg.includes(" COMMIT ")) logs.push(msg);
    },
  });
});

// A batch that fell back to one-by-one would still answer right, and so hide a broken batch:
// no test may leave such a line behind unless it expects it (takeLogs).
afterEach(() => {
  expect(logs).toEqual([]);
});
const takeLogs = (): string[] => logs.splice(0);

afterAll(async () => {
  await ledger?.close();
  await db?.drop();
});

const key = (k: string, fingerprint = "fp-1"): IdempotencyKey => ({ scope: "batch-caller", key: k, fingerprint });
const open = (userId: string, balanceCents = 0n, extra: Parameters<typeof balanceInput>[0] = {}) =>
  ledger.balances.create(balanceInput({ userId, balanceCents, ...extra }));
const debit = (balanceId: string, amount: bigint, extra: { idempotency?: IdempotencyKey; ownerId?: string; allowNegative?: boolean } = {}) =>
  ledger.movements.debit({ balanceId, amountCents: amount, allowNegative: false, metadata: {}, ...extra });
const credit = (
  balanceId: string,
  amount: bigint,
  extra: { idempotency?: IdempotencyKey; ownerId?: string; description?: string; referenceCode?: string; metadata?: Record<string, string> } = {},
) =>
  ledger.movements.credit({ balanceId, amountCents: amount, metadata: {}, ...extra });

/** Each settled call as "ok:<balance after>" or its refusal's reason. */
function summary(results: PromiseSettledResult<MovementResult>[]): string[] {
  return results.map((r) =>
    r.status === "fulfilled"
      ? `ok:${r.value.balance.balanceCents}${r.value.replayed ? ":replayed" : ""}`
      : (r.reason as { reason: string }).reason,
  );
}

/** Batch sizes reported while `fn` ran. */
async function batchSizesOf<T>(fn: () => Promise<T>): Promise<{ value: T; sizes: number[] }> {
  const from = batches.length;
  const value = await fn();
  return { value, sizes: batches.slice(from) };
}

/**
 * A test trigger on new account_transactions rows, run `before` the insert or `deferred` to
 * COMMIT; its plpgsql `body` sees the row as `new` and ends in its own `return`. Resolves to
 * its removal.
 */
async function transactionTrigger(name: string, when: "before" | "deferred", body: string): Promise<() => Promise<void>> {
  await sql(db.url, `create function ${name}() returns trigger language plpgsql as $$ begin ${body} end $$`);
  await sql(
    db.url,
    when === "before"
      ? `create trigger ${name} before insert on account_transactions for each row execute function ${name}()`
      : `create constraint trigger ${name} after insert on account_transactions
           deferrable initially deferred for each row execute function ${name}()`,
  );
  return async () => {
    await sql(db.url, `drop trigger ${name} on account_transactions`);
    await sql(db.url, `drop function ${name}()`);
  };
}

/**
 * Runs `fn` with `settings` ("name = value") set on the test database, which connections
 * opened from then on take up (a ledger opened inside `fn`), and resets them afterwards.
 */
async function withDatabaseSettings<T>(settings: readonly string[], fn: () => Promise<T>): Promise<T> {
  const name = decodeURIComponent(new URL(db.url).pathname.slice(1)).replace(/"/g, '""');
  for (const setting of settings) await sql(db.url, `alter database "${name}" set ${setting}`);
  try {
    return await fn();
  } finally {
    for (const setting of settings) await sql(db.url, `alter database "${name}" reset ${setting.split(" ")[0]}`);
  }
}

/** History and balances agree, and no pooled connection was left inside a transaction. */
const verified = async () => {
  expect((await ledger.integrity.verify()).problems).toEqual([]);
  const open = await sql(
    db.url,
    `select state from pg_stat_activity
      where datname = current_database() and pid <> pg_backend_pid() and state like 'idle in transaction%'`,
  );
  expect(open).toEqual([]);
};

describe("group commit", () => {
  it("one batch on a hot balance: refusals fail only themselves, the rest apply in arrival order", async () => {
    const hot = await open("gc-hot", 100n, {
      organizationId: "org-1",
      referenceCode: "ref-hot",
      metadata: { tier: "gold" },
      expiresAt: new Date(Date.now() + 3_600_000),
    });
    const suspended = await open("gc-hot", 5n, { status: "suspended" });
    const { value: results, sizes } = await batchSizesOf(() =>
      Promise.allSettled([
        debit(hot.id, 30n), // 70
        debit(hot.id, 50n), // 20
        debit(hot.id, 40n), // refused: 20 left
        debit(hot.id, 20n), // 0
        credit(hot.id, 10n, { description: "top-up", referenceCode: "ord-9", metadata: { via: "card" } }), // 10
        debit(hot.id, 15n), // refused: 10 left
        debit(hot.id, 1n, { ownerId: "someone-else" }), // NOT_FOUND
        credit(suspended.id, 1n), // BALANCE_NOT_ACTIVE
        credit("bal_unknown", 1n), // NOT_FOUND
        debit(hot.id, 10n), // 0
        debit(hot.id, 5n, { allowNegative: true }), // -5
      ]),
    );
    expect(sizes).toEqual([11]);
    expect(summary(results)).toEqual([
      "ok:70",
      "ok:20",
      "INSUFFICIENT_BALANCE",
      "ok:0",
      "ok:10",
      "INSUFFICIENT_BALANCE",
      "NOT_FOUND",
      "BALANCE_NOT_ACTIVE",
      "NOT_FOUND",
      "ok:0",
      "ok:-5",
    ]);
    // The refusals carry the balance as the batch had left it at their turn.
    expect((results[2] as PromiseRejectedResult).reason.details).toEqual({ required_cents: "40", available_cents: "20" });
    expect((results[5] as PromiseRejectedResult).reason.details).toEqual({ required_cents: "15", available_cents: "10" });

    // Each success returns the balance right after itself, and its own transaction.
    const oks = results.filter((r): r is PromiseFulfilledResult<MovementResult> => r.status === "fulfilled").map((r) => r.value);
    expect(oks.map((r) => [r.balance.version, r.balance.lastSequence, r.transaction.sequence])).toEqual([
      [2n, 2n, 2n],
      [3n, 3n, 3n],
      [4n, 4n, 4n],
      [5n, 5n, 5n],
      [6n, 6n, 6n],
      [7n, 7n, 7n],
    ]);
    for (const r of oks) {
      expect(r.transaction.createdAt.getTime()).toBe(r.balance.updatedAt.getTime());
      expect(r.balance.updatedAt.getTime()).toBeGreaterThanOrEqual(hot.updatedAt.getTime());
    }
    expect(oks[1]!.transaction).toMatchObject({ transactionType: "debit", amountCents: 50n, balanceBeforeCents: 70n, balanceAfterCents: 20n });

    expect(await balanceRowOf(db.url, hot.id)).toMatchObject({ balance_cents: "-5", version: "7", last_sequence: "7" });
    const txns = await transactionsOf(db.url, hot.id);
    expect(txns.map((t) => [t.transaction_type, t.amount_cents, t.balance_before_cents, t.balance_after_cents, t.sequence])).toEqual([
      ["adjustment", "100", "0", "100", "1"],
      ["debit", "30", "100", "70", "2"],
      ["debit", "50", "70", "20", "3"],
      ["debit", "20", "20", "0", "4"],
      ["credit", "10", "0", "10", "5"],
      ["debit", "10", "10", "0", "6"],
      ["debit", "5", "0", "-5", "7"],
    ]);
    expect(txns.slice(1).map((t) => t.id)).toEqual(oks.map((r) => r.transaction.id));
    // What the ORM reads back is what the batch returned, field for field.
    expect(await ledger.balances.get(hot.id)).toEqual(oks.at(-1)!.balance);
    const listed = await ledger.reads.listTransactions({ balanceId: hot.id }, {}, { limit: 10, page: 1 });
    expect(listed.items.slice(0, 6).reverse()).toEqual(oks.map((r) => r.transaction));
    expect(await balanceRowOf(db.url, suspended.id)).toMatchObject({ balance_cents: "5", version: "1" });
    await verified();
  });

  it("200 concurrent debits of 1 on 50 in few batches: exactly 50 succeed; created_at follows sequence", async () => {
    const b = await open("gc-overdraft", 50n);
    const { value: results, sizes } = await batchSizesOf(() =>
      Promise.allSettled(Array.from({ length: 200 }, () => debit(b.id, 1n))),
    );
    expect(sizes.reduce((a, n) => a + n, 0)).toBe(200);
    expect(sizes.length).toBeLessThanOrEqual(2);
    expect(summary(results).filter((s) => s.startsWith("ok"))).toHaveLength(50);
    expect(new Set(summary(results).filter((s) => !s.startsWith("ok")))).toEqual(new Set(["INSUFFICIENT_BALANCE"]));
    expect(await balanceRowOf(db.url, b.id)).toMatchObject({ balance_cents: "0", version: "51", last_sequence: "51" });
    const [order] = await sql<{ ok: boolean }>(
      db.url,
      `select bool_and(created_at >= prev) as ok from (
         select created_at, lag(created_at) over (order by sequence) as prev from account_transactions where account_balance_id = $1
       ) x where prev is not null`,
      [b.id],
    );
    expect(order?.ok).toBe(true);
    await verified();
  });

  it("calls that reach the ledger after different numbers of awaits still share one batch", async () => {
    // A server's requests arrive together but each passes its own awaits (auth, decoding)
    // before it calls the ledger; a flush on the first call's microtask sent it alone.
    const b = await open("gc-awaits", 100n);
    const afterAwaits = async (n: number) => {
      for (let i = 0; i < n; i++) await Promise.resolve();
      return debit(b.id, 1n);
    };
    const { value: results, sizes } = await batchSizesOf(() => Promise.all([0, 3, 1, 7, 12, 2].map(afterAwaits)));
    expect(sizes).toEqual([6]);
    expect(results.map((r) => r.balance.balanceCents)).toEqual([99n, 96n, 98n, 95n, 94n, 97n]);
  });

  it("reports every call to onMovement and every batch to onBatch", async () => {
    const b = await open("gc-hooks", 3n);
    const from = outcomes.length;
    await Promise.allSettled([credit(b.id, 1n), debit(b.id, 10n), debit(b.id, 0n), credit("bal_none", 1n)]);
    expect(outcomes.slice(from)).toEqual([
      ["debit", "VALIDATION_FAILED"],
      ["credit", "ok"],
      ["debit", "INSUFFICIENT_BALANCE"],
      ["credit", "NOT_FOUND"],
    ]);
    expect(ledger.batching).toBe(true);
  });
});

describe("idempotency keys in batches", () => {
  it("the same key twice in one batch: the later call waits for the first's result", async () => {
    const b = await open("gc-key", 10n);
    const { value: results, sizes } = await batchSizesOf(() =>
      Promise.allSettled([
        credit(b.id, 7n, { idempotency: key("dup") }),
        credit(b.id, 7n, { idempotency: key("dup") }),
        credit(b.id, 7n, { idempotency: key("dup", "fp-other") }),
        debit(b.id, 7n, { idempotency: key("dup") }),
        // Refused first, so its key stays free: the same-key call after a top-up runs afresh.
        debit(b.id, 30n, { idempotency: key("retry") }),
        credit(b.id, 20n),
        debit(b.id, 30n, { idempotency: key("retry") }),
        credit(b.id, 7n, { idempotency: key("dup") }),
      ]),
    );
    expect(summary(results)).toEqual([
      "ok:17",
      "ok:17:replayed",
      "IDEMPOTENCY_KEY_REUSED",
      "IDEMPOTENCY_KEY_REUSED",
      "INSUFFICIENT_BALANCE",
      "ok:37",
      "ok:7",
      "ok:17:replayed",
    ]);
    // Three calls ran at once, the five followers of a key in the next batch.
    expect(sizes).toEqual([8, 5]);
    const first = (results[0] as PromiseFulfilledResult<MovementResult>).value;
    expect((results[1] as PromiseFulfilledResult<MovementResult>).value).toEqual({ ...first, replayed: true });
    expect((await transactionsOf(db.url, b.id)).map((t) => [t.transaction_type, t.amount_cents, t.balance_after_cents])).toEqual([
      ["adjustment", "10", "10"],
      ["credit", "7", "17"],
      ["credit", "20", "37"],
      ["debit", "30", "7"],
    ]);
    const keys = await sql(db.url, "select key, operation, status from idempotency_keys where scope = 'batch-caller' order by key");
    expect(keys).toEqual([
      { key: "dup", operation: "credit", status: "done" },
      { key: "retry", operation: "debit", status: "done" },
    ]);
    await verified();
  });

  // With the tag in them, the batch's JSON goes as an escaped literal; without, dollar-quoted.
  for (const [label, odd, k] of [
    ["holding the dollar tag", `it's \\ a "$v$" test $$ ✓ E'\\n'`, { scope: `scope '$v$' \\`, key: `k$v$'"\\`, fingerprint: `fp '$$'` }],
    ["without the tag", `it's \\ a "q" test $$ ✓ E'\\n' $v`, { scope: `scope '' \\`, key: `k'"\\ $v`, fingerprint: `fp '$$' v$` }],
  ] as const) {
    it(`keys and texts with quotes, backslashes and dollar signs (${label}) are stored and replayed exactly`, async () => {
      const b = await open("gc-text", 1n);
      const call = () => credit(b.id, 5n, { idempotency: { ...k }, description: odd, referenceCode: odd, metadata: { [odd]: odd } });
      const [first, again] = await Promise.all([call(), call()]);
      expect(first.transaction).toMatchObject({ description: odd, referenceCode: odd, metadata: { [odd]: odd } });
      expect(again).toEqual({ ...first, replayed: true });
      const [row] = await sql<{ description: string; reference_code: string; metadata: Record<string, string> }>(
        db.url,
        "select description, reference_code, metadata from account_transactions where account_balance_id = $1 and sequence = 2",
        [b.id],
      );
      expect(row).toEqual({ description: odd, reference_code: odd, metadata: { [odd]: odd } });
      expect(await sql(db.url, "select scope, key, fingerprint, status from idempotency_keys where key = $1", [k.key])).toEqual([
        { ...k, status: "done" },
      ]);
      expect(await balanceRowOf(db.url, b.id)).toMatchObject({ balance_cents: "6", version: "2" });
      await verified();
    });
  }

  it("a key stored by an earlier batch replays in a later one and writes nothing", async () => {
    const b = await open("gc-replay", 100n);
    const first = await debit(b.id, 40n, { idempotency: key("across") });
    const results = await Promise.allSettled([
      debit(b.id, 40n, { idempotency: key("across") }),
      debit(b.id, 1n),
      debit(b.id, 40n, { idempotency: key("across") }),
      credit(b.id, 40n, { idempotency: key("across") }),
    ]);
    expect(summary(results)).toEqual(["ok:60:replayed", "ok:59", "ok:60:replayed", "IDEMPOTENCY_KEY_REUSED"]);
    expect((results[0] as PromiseFulfilledResult<MovementResult>).value).toEqual({ ...first, replayed: true });
    expect(await transactionsOf(db.url, b.id)).toHaveLength(3);
    expect(await balanceRowOf(db.url, b.id)).toMatchObject({ balance_cents: "59", version: "3" });
  });

  it("three ledgers (three processes) with one key and one hot balance: one write, no overdraft", async () => {
    const others = await Promise.all([1, 2].map(() => openLedger({ databaseUrl: db.url, poolMax: 4, migrate: false })));
    try {
      const b = await open("gc-processes", 150n);
      const all = [ledger, ...others];
      const calls: Array<Promise<MovementResult>> = [];
      for (let i = 0; i < 300; i++) {
        const l = all[i % 3]!;
        calls.push(l.movements.debit({ balanceId: b.id, amountCents: 1n, allowNegative: false, metadata: {} }));
        if (i % 30 === 0) calls.push(l.movements.credit({ balanceId: b.id, amountCents: 2n, metadata: {}, idempotency: key("shared") }));
      }
      const results = await Promise.allSettled(calls);
      const keyed = results.filter((_, i) => i % 31 === 1);
      expect(keyed).toHaveLength(10);
      const keyedValues = keyed.map((r) => (r as PromiseFulfilledResult<MovementResult>).value);
      expect(new Set(keyedValues.map((v) => v.transaction.id)).size).toBe(1);
      expect(keyedValues.filter((v) => !v.replayed)).toHaveLength(1);
      // Whether the credit landed before the last debits is up to the race; the sums are not.
      const debited = results.filter((r, i) => i % 31 !== 1 && r.status === "fulfilled").length;
      const row = await balanceRowOf(db.url, b.id);
      expect(BigInt(row!.balance_cents)).toBe(152n - BigInt(debited));
      expect(BigInt(row!.balance_cents) >= 0n && debited >= 150).toBe(true);
      expect(row!.version).toBe(String(1 + debited + 1));
      await verified();
    } finally {
      await Promise.all(others.map((o) => o.close()));
    }
  });
});

describe("a failing batch", () => {
  // With this search path, connections opened afterwards call a pg_xact_status of the test's
  // own that fails: the database cannot say what became of a transaction.
  const shadowStatus = ["search_path = public, pg_catalog"];
  beforeAll(() =>
    sql(db.url, "create function public.pg_xact_status(xid8) returns text language plpgsql as $$ begin raise exception 'not now'; end $$"),
  );

  it("a movement that makes the batch's SQL fail fails alone; its neighbours commit", async () => {
    const b = await open("gc-poison", 100n);
    const other = await open("gc-poison", 0n);
    // A rule the ledger's own checks do not know, so only the database refuses it.
    await sql(db.url, "alter table account_transactions add constraint test_no_13 check (amount_cents <> 13)");
    try {
      const { value: results, sizes } = await batchSizesOf(() =>
        Promise.allSettled([debit(b.id, 1n), debit(b.id, 13n), credit(other.id, 2n), debit(b.id, 3n), credit(other.id, 13n)]),
      );
      expect(sizes).toEqual([5]);
      expect(summary(results)).toEqual(["ok:99", "INTERNAL", "ok:2", "ok:96", "INTERNAL"]);
      expect(takeLogs()).toEqual(["ledger: a batch of 5 movement(s) failed (SQLSTATE 23514); running them one by one"]);
      // Nothing internal leaks into the refusal.
      const err = (results[1] as PromiseRejectedResult).reason as Error;
      expect(err.message).toBe("internal ledger error");
      expect(Object.keys(err)).not.toContain("cause");
    } finally {
      await sql(db.url, "alter table account_transactions drop constraint test_no_13");
    }
    expect(await balanceRowOf(db.url, b.id)).toMatchObject({ balance_cents: "96", version: "3" });
    expect(await balanceRowOf(db.url, other.id)).toMatchObject({ balance_cents: "2", version: "2" });
    await verified();
  });

  it("a write that leaves out a row it decided on fails in its own statement, so its COMMIT never runs", async () => {
    const b = await open("gc-short", 100n);
    // Silently drops one row the batch decided to write (a BEFORE trigger returning null).
    const drop = await transactionTrigger("test_skip_13", "before", "if new.amount_cents = 13 then return null; end if; return new;");
    try {
      const { value: results, sizes } = await batchSizesOf(() =>
        Promise.allSettled([debit(b.id, 1n), debit(b.id, 13n), debit(b.id, 3n)]),
      );
      expect(sizes).toEqual([3]);
      // The batch's check (SQLSTATE XX000) rolled it back whole; call by call, the dropped
      // row leaves its balance off its chain, so only that call is refused.
      expect(takeLogs()).toEqual(["ledger: a batch of 3 movement(s) failed (SQLSTATE XX000); running them one by one"]);
      expect(summary(results)).toEqual(["ok:99", "INTERNAL", "ok:96"]);
    } finally {
      await drop();
    }
    expect(await balanceRowOf(db.url, b.id)).toMatchObject({ balance_cents: "96", version: "3" });
    expect((await transactionsOf(db.url, b.id)).map((t) => t.amount_cents)).toEqual(["100", "1", "3"]);
    await verified();
  });

  it("a failure at COMMIT (a deferred constraint) rolls the batch back and reruns it call by call", async () => {
    const b = await open("gc-commit", 50n);
    const drop = await transactionTrigger("test_no_17", "deferred", "if new.amount_cents = 17 then raise exception 'no 17'; end if; return null;");
    try {
      const results = await Promise.allSettled([credit(b.id, 5n), debit(b.id, 17n), debit(b.id, 5n)]);
      expect(summary(results)).toEqual(["ok:55", "INTERNAL", "ok:50"]);
      expect(takeLogs()).toEqual(["ledger: a batch of 3 movement(s) failed (SQLSTATE P0001); running them one by one"]);
    } finally {
      await drop();
    }
    expect((await transactionsOf(db.url, b.id)).map((t) => t.amount_cents)).toEqual(["50", "5", "5"]);
    await verified();
  });

  it("the batch's connection killed mid-batch: every call gets a definite outcome, nothing half-written", async () => {
    const a = await open("gc-kill", 100n);
    const c = await open("gc-kill", 100n);
    const holder = new pg.Client({ connectionString: db.url });
    const observer = new pg.Client({ connectionString: db.url });
    holder.on("error", () => {});
    observer.on("error", () => {});
    await holder.connect();
    await observer.connect();
    try {
      // Hold one balance's lock, so the batch stops inside its transaction, on that lock.
      await holder.query("begin");
      await holder.query("select 1 from account_balances where id = $1 for update", [a.id]);
      const pending = Promise.allSettled([
        debit(a.id, 10n, { idempotency: key("kill-1") }),
        credit(c.id, 5n),
        debit(c.id, 500n),
        debit(a.id, 20n),
      ]);
      let killed = false;
      for (let i = 0; i < 200 && !killed; i++) {
        const rows = (
          await observer.query(
            `select pg_terminate_backend(pid) as killed from pg_stat_activity
              where datname = current_database() and wait_event_type = 'Lock' and pid <> pg_backend_pid()`,
          )
        ).rows as Array<{ killed: boolean }>;
        killed = rows.some((r) => r.killed);
        if (!killed) await new Promise((r) => setTimeout(r, 10));
      }
      expect(killed).toBe(true);
      await holder.query("rollback");
      const results = await pending;
      // Run again call by call on fresh connections: each exactly once (the two debits of
      // `a` in either order).
      const s = summary(results);
      expect(takeLogs()).toEqual(["ledger: a batch of 4 movement(s) failed (connection lost); running them one by one"]);
      expect([s[1], s[2]]).toEqual(["ok:105", "INSUFFICIENT_BALANCE"]);
      expect([s[0], s[3]]).toSatisfy((pair: unknown[]) =>
        JSON.stringify(pair) === JSON.stringify(["ok:90", "ok:70"]) || JSON.stringify(pair) === JSON.stringify(["ok:70", "ok:80"]),
      );
    } finally {
      await holder.end().catch(() => {});
      await observer.end().catch(() => {});
    }
    expect(await balanceRowOf(db.url, a.id)).toMatchObject({ balance_cents: "70", version: "3" });
    expect(await balanceRowOf(db.url, c.id)).toMatchObject({ balance_cents: "105", version: "2" });
    expect(await sql(db.url, "select status from idempotency_keys where key = 'kill-1'")).toEqual([{ status: "done" }]);
    // The pool recovered: the next movements batch again.
    const { sizes } = await batchSizesOf(() => Promise.all([credit(a.id, 1n), credit(c.id, 1n)]));
    expect(sizes).toEqual([2]);
    await verified();
  });
  /** Makes pg fail to read the write's reply (its row counts, an int4[]), which it parses after the whole message, COMMIT included, has run on the server. */
  async function withUnreadableWriteReply<T>(fn: () => Promise<T>): Promise<T> {
    const INT4_ARRAY = 1007;
    const original = pg.types.getTypeParser(INT4_ARRAY, "text");
    pg.types.setTypeParser(INT4_ARRAY, () => {
      throw new Error("unreadable reply");
    });
    try {
      return await fn();
    } finally {
      pg.types.setTypeParser(INT4_ARRAY, original);
    }
  }

  it("a reply that cannot be read after COMMIT took effect: the database says it committed, every call gets its outcome once", async () => {
    const a = await open("gc-unread", 100n);
    const c = await open("gc-unread", 100n);
    const results = await withUnreadableWriteReply(() => Promise.allSettled([debit(a.id, 10n), credit(c.id, 5n)]));
    expect(summary(results)).toEqual(["ok:90", "ok:105"]);
    expect(takeLogs()).toEqual(["ledger: unexpected error after COMMIT was sent; the database reports the transaction committed"]);
    expect(await balanceRowOf(db.url, a.id)).toMatchObject({ balance_cents: "90", version: "2" });
    expect(await balanceRowOf(db.url, c.id)).toMatchObject({ balance_cents: "105", version: "2" });
    const [written] = await transactionsOf(db.url, a.id).then((rows) => rows.slice(-1));
    expect(written).toMatchObject({ id: (results[0] as PromiseFulfilledResult<MovementResult>).value.transaction.id });
    await verified();
  });

  it("when the database cannot say whether the batch committed: UNAVAILABLE for every call, none run again", async () => {
    await withDatabaseSettings(shadowStatus, async () => {
      const lines: string[] = [];
      const l = await openLedger({ databaseUrl: db.url, migrate: false, log: (m) => lines.push(m) });
      try {
        const a = await l.balances.create(balanceInput({ userId: "gc-unknown", balanceCents: 100n }));
        const c = await l.balances.create(balanceInput({ userId: "gc-unknown", balanceCents: 100n }));
        const results = await withUnreadableWriteReply(() =>
          Promise.allSettled([
            l.movements.debit({ balanceId: a.id, amountCents: 10n, allowNegative: false, metadata: {} }),
            l.movements.credit({ balanceId: c.id, amountCents: 5n, metadata: {} }),
          ]),
        );
        expect(summary(results)).toEqual(["UNAVAILABLE", "UNAVAILABLE"]);
        expect((results[0] as PromiseRejectedResult).reason.message).toMatch(/may have taken effect/);
        expect(lines.filter((m) => m.includes("COMMIT") || m.includes(" batch "))).toEqual([
          "ledger: unexpected error after COMMIT was sent; the database reports the transaction unknown",
          "ledger: unexpected error while committing a batch of 2 movement(s); answered UNAVAILABLE",
        ]);
        // It had committed, once: no caller was told success, and nothing ran a second time.
        expect(await balanceRowOf(db.url, a.id)).toMatchObject({ balance_cents: "90", version: "2" });
        expect(await balanceRowOf(db.url, c.id)).toMatchObject({ balance_cents: "105", version: "2" });
      } finally {
        await l.close();
      }
    });
    await verified();
  });

  /**
   * A debit of 10 and a credit of 5 on two balances of 100, on a ledger of its own whose
   * COMMITs wait 100 ms (commit_delay) for a cancel to land in: the backend running
   * `statement` (a LIKE pattern) is cancelled once it has been active for 40 ms. The server
   * acts on a cancel held over COMMIT when it logs the statement's duration, and then
   * answers 57014 for a message whose COMMIT took effect.
   */
  async function cancelledDuringCommit(batching: boolean, statement: string, { statusFails = false } = {}) {
    const settings = ["commit_delay = 100000", "commit_siblings = 0", "log_min_duration_statement = 0"];
    return withDatabaseSettings(statusFails ? [...settings, ...shadowStatus] : settings, async () => {
      const lines: string[] = [];
      const l = await openLedger({ databaseUrl: db.url, migrate: false, log: (m) => lines.push(m), ...(batching ? {} : { batching: false }) });
      const observer = new pg.Client({ connectionString: db.url });
      observer.on("error", () => {});
      await observer.connect();
      try {
        const a = await l.balances.create(balanceInput({ userId: "gc-cancel", balanceCents: 100n }));
        const c = await l.balances.create(balanceInput({ userId: "gc-cancel", balanceCents: 100n }));
        const pending = Promise.allSettled([
          l.movements.debit({ balanceId: a.id, amountCents: 10n, allowNegative: false, metadata: {} }),
          l.movements.credit({ balanceId: c.id, amountCents: 5n, metadata: {} }),
        ]);
        let cancelled = false;
        for (let i = 0; i < 500 && !cancelled; i++) {
          const rows = (
            await observer.query(
              `select pg_cancel_backend(pid) as cancelled from pg_stat_activity
                where datname = current_database() and state = 'active' and query like $1
                  and clock_timestamp() - query_start > interval '40 ms'
                order by query_start limit 1`,
              [statement],
            )
          ).rows as Array<{ cancelled: boolean }>;
          cancelled = rows.some((r) => r.cancelled);
        }
        expect(cancelled).toBe(true);
        const results = await pending;
        const said = lines.filter((m) => m.includes("COMMIT") || m.includes(" batch "));
        return { results, said, a: (await balanceRowOf(db.url, a.id))!, c: (await balanceRowOf(db.url, c.id))! };
      } finally {
        await observer.end().catch(() => {});
        await l.close();
      }
    });
  }

  it("a cancel that lands during COMMIT: the database says what became of the batch, every call applied once", async () => {
    const { results, said, a, c } = await cancelledDuringCommit(true, "with vb as%");
    // Committed (the cancel came after COMMIT) and settled, or rolled back (it came before)
    // and run again one by one: either way each call applied exactly once.
    expect(summary(results)).toEqual(["ok:90", "ok:105"]);
    expect([
      ["ledger: SQLSTATE 57014 after COMMIT was sent; the database reports the transaction committed"],
      [
        "ledger: SQLSTATE 57014 after COMMIT was sent; the database reports the transaction aborted",
        "ledger: a batch of 2 movement(s) failed (SQLSTATE 57014); running them one by one",
      ],
    ]).toContainEqual(said);
    expect(a).toMatchObject({ balance_cents: "90", version: "2" });
    expect(c).toMatchObject({ balance_cents: "105", version: "2" });
    await verified();
  });

  it("batching off, a cancel that lands during COMMIT: the database says what became of the write, each call applied once", async () => {
    const { results, said, a, c } = await cancelledDuringCommit(false, "COMMIT%");
    // Committed (the cancel is reported after the commit: the usual case) and answered as
    // done, or rolled back (it landed before) and run again: each call applied once.
    expect(summary(results)).toEqual(["ok:90", "ok:105"]);
    expect([a, c]).toMatchObject([
      { balance_cents: "90", version: "2" },
      { balance_cents: "105", version: "2" },
    ]);
    // The cancelled COMMIT was settled by asking the database, not answered by chance.
    expect(said).toHaveLength(1);
    expect(said[0]).toMatch(/^ledger: SQLSTATE 57014 after COMMIT was sent; the database reports the transaction (committed|aborted)$/);
    await verified();
  });

  it("batching off, a cancel during COMMIT the database cannot settle: UNAVAILABLE that may have taken effect, never INTERNAL", async () => {
    const { results, said, a, c } = await cancelledDuringCommit(false, "COMMIT%", { statusFails: true });
    expect(said).toEqual(["ledger: SQLSTATE 57014 after COMMIT was sent; the database reports the transaction unknown"]);
    // The cancelled COMMIT cannot be settled; the other call went through and moved its balance.
    expect(summary(results).filter((r) => r === "UNAVAILABLE")).toHaveLength(1);
    const cases = [
      [results[0]!, a.balance_cents, "90"],
      [results[1]!, c.balance_cents, "105"],
    ] as const;
    for (const [result, cents, moved] of cases) {
      if (result.status === "fulfilled") expect(cents).toBe(moved);
      else expect(result.reason).toMatchObject({ reason: "UNAVAILABLE", message: expect.stringMatching(/may have taken effect/) });
    }
    await verified();
  });

  for (const batching of [true, false]) {
    it(`the connection lost while COMMIT is still running (batching ${batching ? "on" : "off"}): in progress, then committed; each call answered once`, async () => {
      // COMMIT runs a deferred trigger that sleeps 1 s; 200 ms after COMMIT is sent, the
      // client side of the connection drops (as a network failure would), so the backend
      // finishes the COMMIT with nobody to tell.
      const drop = await transactionTrigger("test_slow_commit", "deferred", "if new.amount_cents = 23 then perform pg_sleep(1); end if; return new;");
      const lines: string[] = [];
      const l = await openLedger({ databaseUrl: db.url, migrate: false, log: (m) => lines.push(m), ...(batching ? {} : { batching: false }) });
      // The batch sends its text as a string; knex (batching off) a query config.
      const isCommit = (query: unknown) => {
        const text = typeof query === "string" ? query : (query as { text?: unknown } | null)?.text;
        return typeof text === "string" && (batching ? text.endsWith("; commit") : text === "COMMIT;");
      };
      const original = pg.Client.prototype.query;
      let results: PromiseSettledResult<MovementResult>[];
      try {
        const a = await l.balances.create(balanceInput({ userId: "gc-drop", balanceCents: 100n }));
        const c = await l.balances.create(balanceInput({ userId: "gc-drop", balanceCents: 100n }));
        pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
          if (!isCommit(args[0])) return (original as (...a: unknown[]) => unknown).apply(this, args);
          // Answered through a promise (the batch) or a callback (knex).
          let answered = false;
          const last = args[args.length - 1];
          if (typeof last === "function") {
            args[args.length - 1] = (...reply: unknown[]) => {
              answered = true;
              return (last as (...r: unknown[]) => unknown)(...reply);
            };
          }
          const out = (original as (...a: unknown[]) => unknown).apply(this, args);
          if (out instanceof Promise) {
            out.then(
              () => (answered = true),
              () => (answered = true),
            );
          }
          const socket = (this as unknown as { connection: { stream: { destroy(): void } } }).connection.stream;
          setTimeout(() => answered || socket.destroy(), 200);
          return out;
        } as typeof original;
        results = await Promise.allSettled([
          l.movements.debit({ balanceId: a.id, amountCents: 23n, allowNegative: false, metadata: {} }),
          l.movements.credit({ balanceId: c.id, amountCents: 5n, metadata: {} }),
        ]);
        pg.Client.prototype.query = original;
        expect(summary(results)).toEqual(["ok:77", "ok:105"]);
        expect(await balanceRowOf(db.url, a.id)).toMatchObject({ balance_cents: "77", version: "2" });
        expect(await balanceRowOf(db.url, c.id)).toMatchObject({ balance_cents: "105", version: "2" });
      } finally {
        pg.Client.prototype.query = original;
        await l.close();
        await drop();
      }
      expect(lines.filter((m) => m.includes("COMMIT") || m.includes(" batch "))).toEqual([
        "ledger: connection lost after COMMIT was sent; the database reports the transaction committed",
      ]);
      await verified();
    });
  }

  // Held in the write's own statement (a row trigger) or in COMMIT (a deferred one): both
  // are in the one message, and the ledger cannot tell how far it got.
  for (const [where, when] of [
    ["in the write", "before"],
    ["at COMMIT", "deferred"],
  ] as const) {
    it(`the connection lost ${where}, once the write and COMMIT are sent: rolled back by the database, every call run again once`, async () => {
      const a = await open("gc-commit-kill", 100n);
      const c = await open("gc-commit-kill", 100n);
      // Long enough for the observer to kill the backend; only the first time, so that the
      // calls' second run goes through.
      await sql(db.url, "create sequence test_slow_19_runs");
      const drop = await transactionTrigger(
        "test_slow_19",
        when,
        "if new.amount_cents = 19 and nextval('test_slow_19_runs') = 1 then perform pg_sleep(5); end if; return new;",
      );
      const observer = new pg.Client({ connectionString: db.url });
      observer.on("error", () => {});
      await observer.connect();
      try {
        const pending = Promise.allSettled([debit(a.id, 19n), credit(c.id, 5n), debit(a.id, 1n)]);
        let killed = false;
        for (let i = 0; i < 300 && !killed; i++) {
          const rows = (
            await observer.query(
              `select pg_terminate_backend(pid) as killed from pg_stat_activity
                where datname = current_database() and wait_event = 'PgSleep' and pid <> pg_backend_pid()`,
            )
          ).rows as Array<{ killed: boolean }>;
          killed = rows.some((r) => r.killed);
          if (!killed) await new Promise((r) => setTimeout(r, 10));
        }
        expect(killed).toBe(true);
        const results = await pending;
        // The backend died before COMMIT finished, so the database rolled the batch back and
        // says so: the calls ran again one by one, each once.
        expect(summary(results)).toEqual(["ok:81", "ok:105", "ok:80"]);
        expect(takeLogs()).toEqual([
          "ledger: connection lost after COMMIT was sent; the database reports the transaction aborted",
          "ledger: a batch of 3 movement(s) failed (connection lost); running them one by one",
        ]);
      } finally {
        await observer.end().catch(() => {});
        await drop();
        await sql(db.url, "drop sequence test_slow_19_runs");
      }
      expect(await balanceRowOf(db.url, a.id)).toMatchObject({ balance_cents: "80", version: "3" });
      expect(await balanceRowOf(db.url, c.id)).toMatchObject({ balance_cents: "105", version: "2" });
      expect((await transactionsOf(db.url, a.id)).map((t) => t.amount_cents)).toEqual(["100", "19", "1"]);
      // The pool recovered: the next movements batch again.
      const { sizes } = await batchSizesOf(() => Promise.all([credit(a.id, 1n), credit(c.id, 1n)]));
      expect(sizes).toEqual([2]);
      await verified();
    });
  }
});

describe("a balance locked for long", () => {
  /** Another session holding the row lock of `ids` until `release()`. */
  async function hold(...ids: string[]): Promise<{ release(): Promise<void> }> {
    const holder = new pg.Client({ connectionString: db.url });
    holder.on("error", () => {});
    await holder.connect();
    await holder.query("begin");
    await holder.query("select 1 from account_balances where id = any($1) for update", [ids]);
    return {
      async release() {
        await holder.query("rollback").catch(() => {});
        await holder.end().catch(() => {});
      },
    };
  }

  const count = async (balanceId: string) => (await transactionsOf(db.url, balanceId)).length;

  it("close() while a batch waits on a held balance: its calls are not run again one by one but answered 'closing', nothing written", async () => {
    const lines: string[] = [];
    const l = await openLedger({ databaseUrl: db.url, migrate: false, batching: { lockTimeoutMs: 300 }, log: (m) => lines.push(m) });
    const stuck = await open("gc-closing", 10n);
    const lock = await hold(stuck.id);
    try {
      const calls = [1n, 2n, 3n].map((amount) => refusal(l.movements.credit({ balanceId: stuck.id, amountCents: amount, metadata: {} })));
      // Let the batch take its slot and wait on the lock, then close.
      await new Promise((r) => setTimeout(r, 50));
      await l.close();
      for (const call of calls) {
        const err = await call;
        expect([err.reason, err.message]).toEqual(["UNAVAILABLE", "the ledger is closing, nothing was written: try again"]);
      }
      expect(lines.filter((m) => m.includes("one by one"))).toEqual([]);
      expect(await count(stuck.id)).toBe(1);
    } finally {
      await lock.release();
    }
    await verified();
  });

  it("holds up only its own movements: the batch gives up on the lock, the others are applied, its own are UNAVAILABLE with nothing written", async () => {
    const lines: string[] = [];
    const l = await openLedger({ databaseUrl: db.url, migrate: false, batching: { lockTimeoutMs: 200 }, log: (m) => lines.push(m) });
    const stuck = await open("gc-stuck", 10n);
    const free = await open("gc-stuck", 10n);
    const lock = await hold(stuck.id);
    try {
      // refusal() takes the outcome at once: the refusal may come before it is awaited.
      const onStuck = refusal(l.movements.credit({ balanceId: stuck.id, amountCents: 1n, metadata: {} }));
      const onFree = l.movements.credit({ balanceId: free.id, amountCents: 1n, metadata: {} });
      // The free balance's call completes while the other balance is still locked (it would
      // hang here, and the test time out, if it waited for the lock).
      expect((await onFree).balance.balanceCents).toBe(11n);
      expect(lines.filter((m) => m.includes(" batch "))).toEqual([
        "ledger: a batch of 2 movement(s) failed (SQLSTATE 55P03); running them one by one",
      ]);
      const err = await onStuck;
      expect(err.reason).toBe("UNAVAILABLE");
      expect(err.message).toMatch(/nothing was written/);
      expect(await count(stuck.id)).toBe(1);
    } finally {
      await lock.release();
    }
    // Once the lock is gone the balance moves again, in batches.
    expect((await l.movements.credit({ balanceId: stuck.id, amountCents: 1n, metadata: {} })).balance.balanceCents).toBe(11n);
    await l.close();
    await verified();
  });

  it("batches waiting on one locked balance do not take every batch slot: the other balances keep moving", async () => {
    const l = await openLedger({ databaseUrl: db.url, migrate: false, batching: { lockTimeoutMs: 300, maxInFlight: 2 } });
    const stuck = await open("gc-slots", 10n);
    const others = await Promise.all([open("gc-slots", 10n), open("gc-slots", 10n), open("gc-slots", 10n)]);
    const lock = await hold(stuck.id);
    try {
      // Two batches of the locked balance alone, one per slot (a batch of one balance used to
      // wait for its lock with no timeout, in its slot).
      const first = refusal(l.movements.credit({ balanceId: stuck.id, amountCents: 1n, metadata: {} }));
      await new Promise((r) => setTimeout(r, 50));
      const second = refusal(l.movements.credit({ balanceId: stuck.id, amountCents: 1n, metadata: {} }));
      await new Promise((r) => setTimeout(r, 50));
      // Other balances, while both are waiting and after: each completes with the lock held.
      for (const b of others) expect((await l.movements.credit({ balanceId: b.id, amountCents: 5n, metadata: {} })).balance.balanceCents).toBe(15n);
      // Calls on the locked balance that come later queue in its lane, not in batches.
      const third = refusal(l.movements.debit({ balanceId: stuck.id, amountCents: 1n, allowNegative: false, metadata: {} }));
      for (const call of [first, second, third]) expect((await call).reason).toBe("UNAVAILABLE");
      expect(await count(stuck.id)).toBe(1);
    } finally {
      await lock.release();
    }
    expect((await l.movements.credit({ balanceId: stuck.id, amountCents: 1n, metadata: {} })).balance.balanceCents).toBe(11n);
    await l.close();
    await verified();
  });

  it("retries on a balance still held keep to its lane: no batch waits on it again", async () => {
    const lines: string[] = [];
    const l = await openLedger({ databaseUrl: db.url, migrate: false, batching: { lockTimeoutMs: 300, maxInFlight: 2 }, log: (m) => lines.push(m) });
    const stuck = await open("gc-retry", 10n);
    const free = await open("gc-retry", 10n);
    const lock = await hold(stuck.id);
    try {
      expect((await refusal(l.movements.credit({ balanceId: stuck.id, amountCents: 1n, metadata: {} }))).reason).toBe("UNAVAILABLE");
      // A client retries at once, twice: had the calls gone into batches again, both slots
      // would wait on the lock (and log a failed batch each).
      const retries = [1, 2].map(() => refusal(l.movements.credit({ balanceId: stuck.id, amountCents: 1n, metadata: {} })));
      expect((await l.movements.credit({ balanceId: free.id, amountCents: 1n, metadata: {} })).balance.balanceCents).toBe(11n);
      for (const r of retries) expect((await r).reason).toBe("UNAVAILABLE");
      expect(lines.filter((m) => m.includes(" batch "))).toHaveLength(1);
      expect(await count(stuck.id)).toBe(1);
    } finally {
      await lock.release();
    }
    await l.close();
    await verified();
  });

  it("retries on several held balances do not take every pool connection: another balance's call is answered first", async () => {
    // Pool 3, one batch slot: one turn for calls on held balances.
    const l = await openLedger({ databaseUrl: db.url, migrate: false, poolMax: 3, batching: { lockTimeoutMs: 1_000, maxInFlight: 1 } });
    const stuck = await Promise.all([open("gc-pool", 10n), open("gc-pool", 10n), open("gc-pool", 10n)]);
    const free = await open("gc-pool", 10n);
    const lock = await hold(...stuck.map((b) => b.id));
    const order: string[] = [];
    const credit = (balanceId: string) => l.movements.credit({ balanceId, amountCents: 1n, metadata: {} });
    try {
      // First calls: their batch times out, each lane times out, and the balances are held.
      for (const e of await Promise.all(stuck.map((b) => refusal(credit(b.id))))) expect(e.reason).toBe("UNAVAILABLE");
      // Their clients retry at once, then another balance is credited.
      const retries = stuck.map((b) =>
        refusal(credit(b.id)).then((e) => {
          order.push("stuck");
          return e;
        }),
      );
      await new Promise((r) => setTimeout(r, 100));
      const onFree = credit(free.id).then((r) => {
        order.push("free");
        return r;
      });
      expect((await onFree).balance.balanceCents).toBe(11n);
      for (const e of retries) expect((await e).reason).toBe("UNAVAILABLE");
      // Had the three retries held all three connections, the free call would have waited for
      // the first of them to time out.
      expect(order[0]).toBe("free");
    } finally {
      await lock.release();
    }
    await l.close();
    await verified();
  });

  it("a failed batch's calls on free balances do not queue behind a held balance's lock wait", async () => {
    // Pool 3 and two batch slots: the turns' floor of one, the smallest there is.
    const l = await openLedger({ databaseUrl: db.url, migrate: false, poolMax: 3, batching: { lockTimeoutMs: 1_000 } });
    const held = await open("gc-turns", 10n);
    const others = await Promise.all([open("gc-turns", 10n), open("gc-turns", 10n)]);
    const lock = await hold(held.id);
    const order: string[] = [];
    try {
      // One batch with it and two free balances: it times out, and all three go to lanes.
      const onHeld = refusal(l.movements.credit({ balanceId: held.id, amountCents: 1n, metadata: {} })).then((e) => {
        order.push("held");
        return e;
      });
      const onFree = others.map((b) =>
        l.movements.credit({ balanceId: b.id, amountCents: 1n, metadata: {} }).then((r) => {
          order.push("free");
          return r;
        }),
      );
      for (const r of onFree) expect((await r).balance.balanceCents).toBe(11n);
      expect((await onHeld).reason).toBe("UNAVAILABLE");
      expect(order).toEqual(["free", "free", "held"]);
    } finally {
      await lock.release();
    }
    await l.close();
    await verified();
  });

  it("a retry whose key is held by a call waiting on a lock does not hold up its batch's other movements", async () => {
    const l = await openLedger({ databaseUrl: db.url, migrate: false, batching: { lockTimeoutMs: 300, maxInFlight: 8 } });
    const stuck = await open("gc-keywait", 10n);
    const free = await open("gc-keywait", 10n);
    const lock = await hold(stuck.id);
    try {
      const k = key("held-key");
      const original = refusal(l.movements.credit({ balanceId: stuck.id, amountCents: 1n, metadata: {}, idempotency: k }));
      await new Promise((r) => setTimeout(r, 100));
      // Same key again, with a movement of another balance in the same batch.
      const retry = refusal(l.movements.credit({ balanceId: stuck.id, amountCents: 1n, metadata: {}, idempotency: k }));
      const onFree = l.movements.credit({ balanceId: free.id, amountCents: 1n, metadata: {} });
      expect((await onFree).balance.balanceCents).toBe(11n);
      expect((await original).reason).toBe("UNAVAILABLE");
      expect((await retry).reason).toBe("UNAVAILABLE");
      expect(await count(stuck.id)).toBe(1);
    } finally {
      await lock.release();
    }
    // Refused, so the key was not kept: the next try runs afresh, once.
    const again = await l.movements.credit({ balanceId: stuck.id, amountCents: 1n, metadata: {}, idempotency: key("held-key") });
    expect([again.balance.balanceCents, again.replayed]).toEqual([11n, false]);
    await l.close();
    await verified();
  });
});

describe("options", () => {
  it("batching: false runs one transaction per movement with the same results", async () => {
    const seen: number[] = [];
    const plain = await openLedger({ databaseUrl: db.url, migrate: false, batching: false, onBatch: (n) => seen.push(n) });
    try {
      expect(plain.batching).toBe(false);
      const b = await open("gc-off", 10n);
      const results = await Promise.allSettled(
        Array.from({ length: 15 }, () => plain.movements.debit({ balanceId: b.id, amountCents: 1n, allowNegative: false, metadata: {} })),
      );
      expect(summary(results).filter((s) => s.startsWith("ok"))).toHaveLength(10);
      expect(seen).toEqual([]);
      expect(await balanceRowOf(db.url, b.id)).toMatchObject({ balance_cents: "0", version: "11" });
    } finally {
      await plain.close();
    }
  });

  it("maxBatch bounds a batch, and bad values are refused", async () => {
    const seen: number[] = [];
    const small = await openLedger({ databaseUrl: db.url, migrate: false, batching: { maxBatch: 4, maxInFlight: 1 }, onBatch: (n) => seen.push(n) });
    try {
      const b = await open("gc-max", 0n);
      await Promise.all(Array.from({ length: 10 }, () => small.movements.credit({ balanceId: b.id, amountCents: 1n, metadata: {} })));
      expect(seen).toEqual([4, 4, 2]);
      expect(await balanceRowOf(db.url, b.id)).toMatchObject({ balance_cents: "10", version: "11" });
    } finally {
      await small.close();
    }
    for (const batching of [{ maxBatch: 0 }, { maxInFlight: 1.5 }]) {
      expect((await refusal(openLedger({ databaseUrl: db.url, migrate: false, batching }))).reason).toBe("VALIDATION_FAILED");
    }
  });

  it("close() lets queued movements finish, then refuses new ones", async () => {
    const l = await openLedger({ databaseUrl: db.url, migrate: false });
    const b = await open("gc-close", 0n);
    const queued = Array.from({ length: 20 }, () => l.movements.credit({ balanceId: b.id, amountCents: 1n, metadata: {} }));
    await l.close();
    expect((await Promise.all(queued)).map((r) => r.balance.balanceCents).sort((x, y) => Number(x - y)).at(-1)).toBe(20n);
    expect((await refusal(l.movements.credit({ balanceId: b.id, amountCents: 1n, metadata: {} }))).reason).toBe("UNAVAILABLE");
  });
});
