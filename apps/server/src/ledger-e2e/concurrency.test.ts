import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { Code } from "@connectrpc/connect";
import { createApi, type Api, type Auth, type Outcome, type Protocol } from "../testing/protocols.js";
import { HTTP_RULES } from "../testing/routes.js";
import { expectOk, expectRefused } from "../testing/expect.js";
import { inProcessDeployment, processDeployment, runVerify, type Deployment } from "./deployment.js";
import { chainProblems, connectH2, countBy, historyOf, refusalOf, seededRandom, storedBalance } from "./ledger-checks.js";

// Spec section 6, "Concurrency: no lost update, no overdraft, no duplicate under any
// interleaving of requests from any number of server instances sharing the database" —
// proved over the wire, first against one server, then against two `node dist/main.js`
// processes on one database with every request alternating between them.

const MODES = [
  { name: "one server", processes: false, start: () => inProcessDeployment() },
  { name: "two server processes on one database", processes: true, start: () => processDeployment({ servers: 2 }) },
] as const;

const uid = (prefix: string) => `${prefix}_${randomBytes(4).toString("hex")}`;

describe.each(MODES)("$name", ({ processes, start }) => {
  let d: Deployment;
  let apis: Api[];
  let h2: Array<ReturnType<typeof connectH2>>;
  let service: Auth;
  /** The API of server i, round robin. */
  const api = (i: number) => apis[i % apis.length]!;

  beforeAll(async () => {
    d = await start();
    apis = d.ports.map((p) => createApi(p, HTTP_RULES));
    h2 = d.ports.map((p) => connectH2(p));
    service = { bearer: d.serviceToken };
  });

  afterAll(async () => {
    for (const a of apis ?? []) a.close();
    for (const c of h2 ?? []) c.close();
    await d?.close();
  });

  async function createBalance(userId: string, openingCents: number): Promise<string> {
    const created = expectOk(
      await api(0).call("rest", "CreateBalance", { user_id: userId, balance_type: "credits", currency: "USD", balance_cents: openingCents }, service),
    );
    expect(created.data.balance_cents).toBe(openingCents);
    return created.data.id as string;
  }

  async function expectChainWhole(balanceId: string, expectedCents: bigint, expectedCount: number): Promise<void> {
    const [history, balance] = await Promise.all([historyOf(d, balanceId), storedBalance(d, balanceId)]);
    expect(chainProblems(history, balance), `chain of ${balanceId}`).toEqual([]);
    expect(balance.cents).toBe(expectedCents);
    expect(history).toHaveLength(expectedCount);
    // No overdraft at any point of the history (nothing here asks for allow_negative).
    expect(history.filter((t) => t.after < 0n)).toEqual([]);
  }

  it("200 concurrent debits of 1 against a balance of 50: exactly 50 pass, 150 INSUFFICIENT_BALANCE, chain whole", async () => {
    const owner = uid("owner");
    const balanceId = await createBalance(owner, 50);
    const sid = await d.mintSession(owner);

    const settled = await Promise.allSettled(
      Array.from({ length: 200 }, (_, i) =>
        h2[i % h2.length]!.client.debitBalance(
          { id: balanceId, amountCents: 1n, description: `tick ${i}` },
          { headers: { "x-session-id": sid }, timeoutMs: 20_000 },
        ),
      ),
    );
    const passed = settled.flatMap((s) => (s.status === "fulfilled" ? [s.value] : []));
    const refused = settled.flatMap((s) => (s.status === "rejected" ? [refusalOf(s.reason)] : []));
    expect(passed).toHaveLength(50);
    expect(refused).toHaveLength(150);
    for (const r of refused) {
      expect(r).toEqual({
        code: Code.FailedPrecondition,
        reason: "INSUFFICIENT_BALANCE",
        metadata: { required_cents: "1", available_cents: "0" },
      });
    }
    // No double spend: the 50 debits each took a different cent, in 50 different sequence slots.
    const afters = passed.map((p) => p.data!.transaction!.balanceAfterCents).sort((a, b) => (a < b ? -1 : 1));
    expect(afters).toEqual(Array.from({ length: 50 }, (_, i) => BigInt(i)));
    expect(new Set(passed.map((p) => p.data!.transaction!.sequence)).size).toBe(50);
    expect(new Set(passed.map((p) => p.data!.transaction!.id)).size).toBe(50);

    const got = expectOk(await api(1).call("connect-json", "GetBalance", { id: balanceId }, { session: sid }));
    expect(got.data).toMatchObject({ balance_cents: 0, status: "active", version: 51 });

    const history = await historyOf(d, balanceId);
    expect(history).toHaveLength(51);
    expect(history.map((t) => t.sequence)).toEqual(Array.from({ length: 51 }, (_, i) => i + 1));
    expect(history[0]).toMatchObject({ type: "adjustment", amount: 50n, before: 0n, after: 50n });
    for (let i = 1; i < history.length; i++) {
      expect(history[i]).toMatchObject({ type: "debit", amount: 1n, before: history[i - 1]!.after, after: history[i - 1]!.after - 1n });
    }
    await expectChainWhole(balanceId, 0n, 51);
  });

  it("20 balances × 30 concurrent credits and debits over every protocol: no lost update, no overdraft", async () => {
    const seed = Date.now() % 1_000_000;
    const rnd = seededRandom(seed);
    const owner = uid("mixed");
    const sid = await d.mintSession(owner);
    const openings = Array.from({ length: 20 }, () => rnd.int(0, 200));
    const ids = await Promise.all(openings.map((o) => createBalance(owner, o)));

    const protocols: Protocol[] = ["rest", "connect-json", "connect-binary", "grpc"];
    type Op = { balance: number; kind: "credit" | "debit"; amount: number; protocol: Protocol; server: number; asOwner: boolean };
    const ops: Op[] = [];
    for (let b = 0; b < ids.length; b++) {
      for (let k = 0; k < 30; k++) {
        const kind = rnd.int(0, 1) === 0 ? "credit" : "debit";
        ops.push({ balance: b, kind, amount: kind === "credit" ? rnd.int(1, 100) : rnd.int(1, 150), protocol: rnd.pick(protocols), server: rnd.int(0, 1), asOwner: rnd.int(0, 1) === 0 });
      }
    }
    // Interleave the balances: one balance's ops are not sent back to back.
    for (let i = ops.length - 1; i > 0; i--) {
      const j = rnd.int(0, i);
      [ops[i], ops[j]] = [ops[j]!, ops[i]!];
    }

    const outcomes: Outcome[] = await Promise.all(
      ops.map((op) =>
        api(op.server).call(
          op.protocol,
          op.kind === "credit" ? "CreditBalance" : "DebitBalance",
          { id: ids[op.balance]!, amount_cents: op.amount, description: `${op.kind} ${op.amount}` },
          // Owners may debit (not credit) their balances; a service may do both.
          op.kind === "debit" && op.asOwner ? { session: sid } : service,
          { timeoutMs: 30_000 },
        ),
      ),
    );

    const label = `seed ${seed}`;
    const credited = openings.map(() => 0);
    const debited = openings.map(() => 0);
    const passedPerBalance = openings.map(() => 0);
    const seenTxnIds = openings.map(() => new Set<string>());
    outcomes.forEach((o, i) => {
      const op = ops[i]!;
      if (op.kind === "credit" || o.ok) {
        const ok = expectOk(o);
        expect(ok.data.balance.balance_cents, label).toBeGreaterThanOrEqual(0);
        expect(ok.data.transaction.amount_cents).toBe(op.amount);
        expect(ok.data.transaction.balance_after_cents).toBe(ok.data.balance.balance_cents);
        seenTxnIds[op.balance]!.add(ok.data.transaction.id);
        passedPerBalance[op.balance]! += 1;
        if (op.kind === "credit") credited[op.balance]! += op.amount;
        else debited[op.balance]! += op.amount;
      } else {
        // The only acceptable refusal: not enough money at the moment the debit ran.
        expectRefused(o, "INSUFFICIENT_BALANCE");
      }
    });
    console.log(`[${label}] outcomes`, countBy(outcomes, (o) => (o.ok ? "ok" : String(o.reason))));

    await Promise.all(
      ids.map(async (id, b) => {
        const expected = BigInt(openings[b]! + credited[b]! - debited[b]!);
        const opening = openings[b]! > 0 ? 1 : 0;
        await expectChainWhole(id, expected, opening + passedPerBalance[b]!);
        const history = await historyOf(d, id);
        // Every answered transaction is stored, and nothing else was written.
        expect(new Set(history.filter((t) => t.type !== "adjustment").map((t) => t.id)), label).toEqual(seenTxnIds[b]);
        const over = expectOk(await api(b).call("grpc", "GetBalance", { id }, service));
        expect(over.data.balance_cents, label).toBe(Number(expected));
      }),
    );
  });

  it("one idempotency key sent 20 times at once (REST header and Connect field) writes one transaction", async () => {
    const owner = uid("idem");
    const balanceId = await createBalance(owner, 1000);
    const debitKey = `order-${randomBytes(6).toString("hex")}`;
    const debit = { id: balanceId, amount_cents: 125, description: "order 42", reference_code: "ord-42", metadata: { order: "42" } };

    const debits = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        i % 2 === 0
          ? api(i >> 1).call("rest", "DebitBalance", debit, service, { headers: { "idempotency-key": debitKey } })
          : api(i >> 1).call("connect-json", "DebitBalance", { ...debit, idempotency_key: debitKey }, service),
      ),
    );
    const debitAnswers = debits.map(expectOk);
    const debitTxn = debitAnswers[0]!.data.transaction.id as string;
    expect(debitTxn).toMatch(/^txn_/);
    for (const a of debitAnswers) {
      expect(a.data.transaction.id).toBe(debitTxn);
      expect(a.data.transaction).toMatchObject({ amount_cents: 125, balance_before_cents: 1000, balance_after_cents: 875, sequence: 2 });
      // The replay is the first answer: the balance as it was right after the first call.
      expect(a.data.balance).toMatchObject({ balance_cents: 875, version: 2 });
    }

    // And the same for a credit, over gRPC (field) and Connect binary (field) and REST (header).
    const creditKey = `topup-${randomBytes(6).toString("hex")}`;
    const credit = { id: balanceId, amount_cents: 500, description: "top up" };
    const credits = await Promise.all(
      Array.from({ length: 20 }, (_, i) => {
        const protocol: Protocol = (["grpc", "connect-binary", "rest"] as const)[i % 3]!;
        return protocol === "rest"
          ? api(i).call("rest", "CreditBalance", credit, service, { headers: { "Idempotency-Key": creditKey } })
          : api(i).call(protocol, "CreditBalance", { ...credit, idempotency_key: creditKey }, service);
      }),
    );
    const creditAnswers = credits.map(expectOk);
    const creditTxn = creditAnswers[0]!.data.transaction.id as string;
    expect(new Set(creditAnswers.map((a) => a.data.transaction.id))).toEqual(new Set([creditTxn]));
    expect(creditAnswers[0]!.data.transaction).toMatchObject({ balance_before_cents: 875, balance_after_cents: 1375, sequence: 3 });

    const history = await historyOf(d, balanceId);
    expect(history.map((t) => [t.type, t.id])).toEqual([
      ["adjustment", history[0]!.id],
      ["debit", debitTxn],
      ["credit", creditTxn],
    ]);
    await expectChainWhole(balanceId, 1375n, 3);
    const keys = await d.sql<{ n: string }>(`select count(*)::text as n from idempotency_keys where key = any($1)`, [[debitKey, creditKey]]);
    expect(keys[0]!.n).toBe("2");

    // The same key with a different request is refused, and writes nothing.
    const reused = await api(1).call("rest", "DebitBalance", { ...debit, amount_cents: 126 }, service, { headers: { "idempotency-key": debitKey } });
    expectRefused(reused, "IDEMPOTENCY_KEY_REUSED");
    await expectChainWhole(balanceId, 1375n, 3);
  });

  it("afterwards, `cli.js verify` on the database reports 0 with drift and exits 0", async () => {
    const [{ n }] = (await d.sql<{ n: string }>(`select count(*)::text as n from account_balances`)) as [{ n: string }];
    const r = await runVerify(d.databaseUrl);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`verified ${n} balances, 0 with drift`);
    expect(r.stdout).not.toContain("DRIFT");
  });

  if (processes) {
    it("SIGTERM stops both servers with exit code 0", async () => {
      for (const a of apis) a.close();
      for (const c of h2) c.close();
      const exits = await d.stop();
      expect(exits).toHaveLength(2);
      for (const e of exits) {
        expect({ code: e.code, signal: e.signal }, e.stderr.slice(-2000)).toEqual({ code: 0, signal: null });
        expect(e.stderr).toContain('"msg":"stopped"');
      }
    });
  }
});
