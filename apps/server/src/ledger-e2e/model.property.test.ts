import { afterAll, beforeAll, describe, expect, it } from "vitest";
import fc from "fast-check";
import { createApi, PROTOCOLS, type Api, type Auth, type Outcome, type Protocol } from "../testing/protocols.js";
import { HTTP_RULES } from "../testing/routes.js";
import { expectOk, expectRefused, type Reason } from "../testing/expect.js";
import { inProcessDeployment, type Deployment } from "./deployment.js";
import { chainProblems, historyOf, storedBalance } from "./ledger-checks.js";

// Model-based property test: random sequences of create / credit / debit / close / expire /
// suspend-reactivate / sweep, sent over a random protocol to a real server, are compared after
// every step with a few lines of in-memory model (spec section 6). After each sequence every
// balance, its status and its stored history equal the model's, and the ledger's own
// integrity check finds nothing.

type Status = "active" | "suspended" | "expired" | "closed";

interface ModelBalance {
  id: string;
  cents: bigint;
  status: Status;
  /** expires_at has passed (the sweeper may not have run yet). */
  due: boolean;
  /** Transaction types, in sequence order. */
  history: string[];
}

/** The status every read answers: past its expires_at an active balance is expired, swept or not. */
const statusAsRead = (b: ModelBalance): Status => (b.status === "active" && b.due ? "expired" : b.status);

type Op =
  | { kind: "create"; opening: number; protocol: Protocol }
  | { kind: "credit"; pick: number; amount: number; protocol: Protocol }
  | { kind: "debit"; pick: number; amount: number | "all"; asOwner: boolean; allowNegative: boolean; protocol: Protocol }
  | { kind: "close"; pick: number; asOwner: boolean; protocol: Protocol }
  | { kind: "expire"; pick: number; protocol: Protocol }
  | { kind: "status"; pick: number; to: "active" | "suspended"; protocol: Protocol }
  | { kind: "sweep" };

const protocolArb = fc.constantFrom(...PROTOCOLS);
const pickArb = fc.nat({ max: 1000 });
// Empty balances are common (they are the only ones that close).
const openingArb = fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 1000 }));
const createArb = fc.record({ kind: fc.constant("create" as const), opening: openingArb, protocol: protocolArb });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 2, arbitrary: createArb },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("credit" as const), pick: pickArb, amount: fc.integer({ min: 1, max: 500 }), protocol: protocolArb }) },
  {
    weight: 6,
    arbitrary: fc
      .record({
        kind: fc.constant("debit" as const),
        pick: pickArb,
        // Often more than the balance holds; sometimes exactly all of it.
        amount: fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 1, max: 1200 }) }, { weight: 1, arbitrary: fc.constant("all" as const) }),
        asOwner: fc.boolean(),
        allowNegative: fc.integer({ min: 0, max: 6 }).map((n) => n === 0),
        protocol: protocolArb,
      })
      // allow_negative is for admins and services: an owner asking for it is a different story (FORBIDDEN).
      .map((op) => ({ ...op, asOwner: op.allowNegative ? false : op.asOwner })),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("close" as const), pick: pickArb, asOwner: fc.boolean(), protocol: protocolArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("expire" as const), pick: pickArb, protocol: protocolArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("status" as const), pick: pickArb, to: fc.constantFrom("active" as const, "suspended" as const), protocol: protocolArb }) },
  { weight: 1, arbitrary: fc.constant({ kind: "sweep" as const }) },
);

/** What the model says a step does: the refusal, or the new state of the balance. */
type Prediction = { refused: Reason } | { ok: true };

function movementRefusal(b: ModelBalance): Reason | undefined {
  if (b.status !== "active") return "BALANCE_NOT_ACTIVE";
  if (b.due) return "BALANCE_EXPIRED";
  return undefined;
}

describe("the ledger against an in-memory model (fast-check)", () => {
  let d: Deployment;
  let api: Api;
  let service: Auth;
  let run = 0;
  /** How often each outcome was seen, to show the sequences reach every rule. */
  const seen: Record<string, number> = {};

  beforeAll(async () => {
    // The background sweeper runs once at start and then not again during the test: sweeping is
    // a step of the sequence, so the model knows when it happens.
    d = await inProcessDeployment({ EXPIRY_SWEEP_SECONDS: "86400" });
    api = createApi(d.ports[0]!, HTTP_RULES);
    service = { bearer: d.serviceToken };
  });

  afterAll(async () => {
    api?.close();
    await d?.close();
  });

  async function runSequence(ops: Op[]): Promise<void> {
    run += 1;
    const userId = `model_${run}_${Date.now().toString(36)}`;
    const owner: Auth = { session: await d.mintSession(userId) };
    const balances: ModelBalance[] = [];
    const trace: string[] = [];
    const fail = (msg: string) => `${msg}\nsteps so far:\n  ${trace.join("\n  ")}`;

    for (const op of ops) {
      trace.push(JSON.stringify(op));
      if (op.kind === "sweep") {
        await d.inProcess!.app.ledger.expiry.sweepExpired();
        for (const b of balances) {
          if (b.status !== "active" || !b.due) continue;
          if (b.cents > 0n) {
            b.history.push("expiration");
            b.cents = 0n;
          }
          b.status = "expired";
        }
        continue;
      }
      if (op.kind === "create") {
        const o = await api.call(op.protocol, "CreateBalance", { user_id: userId, balance_cents: op.opening, currency: "EUR" }, service);
        const created = expectOk(o);
        balances.push({ id: created.data.id, cents: BigInt(op.opening), status: "active", due: false, history: op.opening > 0 ? ["adjustment"] : [] });
        expect(created.data, fail("create")).toMatchObject({ balance_cents: op.opening, status: "active", user_id: userId });
        continue;
      }
      if (balances.length === 0) continue;
      const b = balances[op.pick % balances.length]!;
      let outcome: Outcome;
      let prediction: Prediction;
      let apply = () => {};
      let moved = 0;

      switch (op.kind) {
        case "credit": {
          const refused = movementRefusal(b);
          prediction = refused ? { refused } : { ok: true };
          apply = () => {
            b.cents += BigInt(op.amount);
            b.history.push("credit");
          };
          moved = op.amount;
          outcome = await api.call(op.protocol, "CreditBalance", { id: b.id, amount_cents: op.amount }, service);
          break;
        }
        case "debit": {
          const amount = op.amount === "all" ? (b.cents > 0n ? Number(b.cents) : 1) : op.amount;
          const refused =
            movementRefusal(b) ?? (!op.allowNegative && b.cents < BigInt(amount) ? ("INSUFFICIENT_BALANCE" as const) : undefined);
          prediction = refused ? { refused } : { ok: true };
          apply = () => {
            b.cents -= BigInt(amount);
            b.history.push("debit");
          };
          moved = amount;
          const request = { id: b.id, amount_cents: amount, ...(op.allowNegative ? { allow_negative: true } : {}) };
          outcome = await api.call(op.protocol, "DebitBalance", request, op.asOwner ? owner : service);
          break;
        }
        case "close": {
          if (b.status === "closed") prediction = { ok: true };
          else if (b.cents !== 0n) prediction = { refused: "BALANCE_NOT_EMPTY" };
          else prediction = { ok: true };
          apply = () => {
            b.status = "closed";
          };
          outcome = await api.call(op.protocol, "CloseBalance", { id: b.id }, op.asOwner ? owner : service);
          break;
        }
        case "expire": {
          // An admin moves expires_at into the past: the balance is expired at once, before any sweep.
          prediction = { ok: true };
          apply = () => {
            b.due = true;
          };
          const past = new Date(Date.now() - 1000).toISOString();
          outcome = await api.call(op.protocol, "UpdateBalance", { id: b.id, expires_at: past }, service);
          break;
        }
        case "status": {
          if (op.to === b.status) prediction = { ok: true };
          else if (b.status === "closed") prediction = { refused: "BALANCE_NOT_ACTIVE" };
          else prediction = { ok: true };
          apply = () => {
            b.status = op.to;
          };
          outcome = await api.call(op.protocol, "UpdateBalance", { id: b.id, status: op.to }, service);
          break;
        }
      }

      const tally = `${op.kind}:${"refused" in prediction ? prediction.refused : "ok"}`;
      seen[tally] = (seen[tally] ?? 0) + 1;
      if ("refused" in prediction) {
        expectRefused(outcome, prediction.refused);
      } else {
        const ok = expectOk(outcome);
        apply();
        const returned = op.kind === "credit" || op.kind === "debit" ? ok.data.balance : ok.data;
        expect({ cents: BigInt(returned.balance_cents), status: returned.status }, fail(`answer of ${op.kind}`)).toEqual({
          cents: b.cents,
          status: statusAsRead(b),
        });
        if (op.kind === "credit" || op.kind === "debit") {
          expect(ok.data.transaction, fail(op.kind)).toMatchObject({
            transaction_type: op.kind,
            amount_cents: moved,
            balance_after_cents: Number(b.cents),
            sequence: b.history.length,
          });
        }
      }
    }

    // The whole run: every balance, its status and its stored history equal the model's.
    for (const b of balances) {
      const protocol = PROTOCOLS[b.history.length % PROTOCOLS.length]!;
      const got = expectOk(await api.call(protocol, "GetBalance", { id: b.id }, service));
      expect({ cents: BigInt(got.data.balance_cents), status: got.data.status }, fail(`final ${b.id}`)).toEqual({ cents: b.cents, status: statusAsRead(b) });
      const [history, stored] = await Promise.all([historyOf(d, b.id), storedBalance(d, b.id)]);
      expect(history.map((t) => t.type), fail(`history of ${b.id}`)).toEqual(b.history);
      expect(chainProblems(history, stored), fail(`chain of ${b.id}`)).toEqual([]);
    }
    const report = await d.inProcess!.app.ledger.integrity.verify();
    expect(report.problems, fail("integrity")).toEqual([]);
  }

  /**
   * One written-out sequence that walks every rule once (fast-check runs it before the random
   * ones), so the coverage check below never depends on luck.
   */
  const walkthrough: [Extract<Op, { kind: "create" }>, Op[]] = [
    { kind: "create", opening: 100, protocol: "rest" },
    [
      { kind: "debit", pick: 0, amount: 150, asOwner: true, allowNegative: false, protocol: "connect-json" }, // INSUFFICIENT_BALANCE
      { kind: "close", pick: 0, asOwner: true, protocol: "grpc" }, // BALANCE_NOT_EMPTY
      { kind: "expire", pick: 0, protocol: "rest" },
      { kind: "debit", pick: 0, amount: 10, asOwner: true, allowNegative: false, protocol: "grpc" }, // BALANCE_EXPIRED before any sweep
      { kind: "credit", pick: 0, amount: 5, protocol: "connect-binary" }, // BALANCE_EXPIRED
      { kind: "sweep" }, // expiration of 100, status expired
      { kind: "debit", pick: 0, amount: 1, asOwner: false, allowNegative: false, protocol: "rest" }, // BALANCE_NOT_ACTIVE
      { kind: "close", pick: 0, asOwner: false, protocol: "rest" }, // an expired, empty balance closes
      { kind: "status", pick: 0, to: "active", protocol: "connect-json" }, // a closed balance is not reopened
      { kind: "create", opening: 0, protocol: "grpc" },
      { kind: "status", pick: 1, to: "suspended", protocol: "grpc" },
      { kind: "credit", pick: 1, amount: 30, protocol: "rest" }, // BALANCE_NOT_ACTIVE
      { kind: "status", pick: 1, to: "active", protocol: "rest" },
      { kind: "credit", pick: 1, amount: 30, protocol: "connect-binary" },
      { kind: "debit", pick: 1, amount: "all", asOwner: true, allowNegative: false, protocol: "rest" },
      { kind: "debit", pick: 1, amount: 5, asOwner: false, allowNegative: true, protocol: "connect-json" }, // -5 (service)
      { kind: "close", pick: 1, asOwner: true, protocol: "connect-binary" }, // BALANCE_NOT_EMPTY (a debt)
      { kind: "expire", pick: 1, protocol: "grpc" },
      { kind: "sweep" }, // expired, the debt is kept, no expiration transaction
      { kind: "close", pick: 1, asOwner: false, protocol: "grpc" }, // BALANCE_NOT_EMPTY
    ],
  ];

  it("30 random sequences of up to 25 steps match the model", async () => {
    const started = Date.now();
    await fc.assert(
      fc.asyncProperty(createArb, fc.array(opArb, { maxLength: 24, size: "max" }), async (first, rest) => runSequence([first, ...rest])),
      { numRuns: 30, examples: [walkthrough] },
    );
    console.log(`model test: ${run} sequences in ${Date.now() - started} ms`, seen);
    for (const k of [
      "debit:INSUFFICIENT_BALANCE",
      "debit:BALANCE_EXPIRED",
      "credit:BALANCE_EXPIRED",
      "debit:BALANCE_NOT_ACTIVE",
      "credit:BALANCE_NOT_ACTIVE",
      "status:BALANCE_NOT_ACTIVE",
      "close:BALANCE_NOT_EMPTY",
      "debit:ok",
      "credit:ok",
      "close:ok",
    ]) {
      expect(seen[k] ?? 0, k).toBeGreaterThan(0);
    }
  }, 120_000);
});
