import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { createApi, type Api, type Auth, type Outcome, type Protocol } from "../testing/protocols.js";
import { HTTP_RULES } from "../testing/routes.js";
import { expectOk, expectRefused } from "../testing/expect.js";
import { processDeployment, runVerify, type Deployment } from "./deployment.js";
import { chainProblems, countBy, historyOf, seededRandom, storedBalance } from "./ledger-checks.js";
import { waitFor } from "../testing/process.js";

// Spec section 6: "A balance past expires_at is expired even before the sweeper runs" and the
// sweeper is "safe with many instances running at once". Two server processes, each sweeping
// every second, while debits and credits hammer balances that expire in the middle of it.

const BALANCES = 8;
const WORKERS = 12;
/** How late a successful movement may be stamped after expires_at: its check ran before, the write a moment later. */
const STAMP_SLACK_MS = 100;

describe("the expiry sweeper of two processes racing debits over the wire", () => {
  let d: Deployment;
  let apis: Api[];
  let service: Auth;

  beforeAll(async () => {
    d = await processDeployment({ servers: 2, env: { EXPIRY_SWEEP_SECONDS: "1" } });
    apis = d.ports.map((p) => createApi(p, HTTP_RULES));
    service = { bearer: d.serviceToken };
  });

  afterAll(async () => {
    for (const a of apis ?? []) a.close();
    await d?.close();
  });

  it("no overdraft, at most one expiration per balance, nothing moves after expires_at, verify clean", async () => {
    const seed = Date.now() % 1_000_000;
    const rnd = seededRandom(seed);
    const label = `seed ${seed}`;
    const owner = `racer_${randomBytes(4).toString("hex")}`;
    const sid = await d.mintSession(owner);
    const protocols: Protocol[] = ["rest", "connect-json", "connect-binary", "grpc"];
    // Connections (gRPC channels, HTTP keep-alive sockets) open before the clock starts.
    await Promise.all(apis.flatMap((a) => protocols.map(async (p) => expectOk(await a.call(p, "ListMyBalances", { limit: 1 }, { session: sid })))));

    const created = await Promise.all(
      Array.from({ length: BALANCES }, async (_, i) => {
        const expiresAt = new Date(Date.now() + 4000 + i * 200);
        const o = await apis[i % 2]!.call("rest", "CreateBalance", { user_id: owner, balance_cents: rnd.int(200, 3000), expires_at: expiresAt.toISOString() }, service);
        const data = expectOk(o).data;
        return { id: data.id as string, expiresAt: new Date(data.expires_at as string) };
      }),
    );
    const lastExpiry = Math.max(...created.map((c) => c.expiresAt.getTime()));

    // Workers keep calling until every balance is past its expiry and both sweepers had time to run.
    const until = lastExpiry + 2500;
    type Call = { balance: number; kind: "credit" | "debit"; outcome: Outcome; sentAt: number };
    const calls: Call[] = [];
    await Promise.all(
      Array.from({ length: WORKERS }, async (_, w) => {
        for (let n = 0; Date.now() < until; n++) {
          const balance = rnd.int(0, BALANCES - 1);
          const kind = rnd.int(0, 9) < 8 ? "debit" : "credit";
          const auth = kind === "debit" && rnd.int(0, 1) === 0 ? { session: sid } : service;
          const sentAt = Date.now();
          const outcome = await apis[(w + n) % 2]!.call(
            rnd.pick(protocols),
            kind === "credit" ? "CreditBalance" : "DebitBalance",
            { id: created[balance]!.id, amount_cents: rnd.int(1, 60) },
            auth,
            { timeoutMs: 20_000 },
          );
          calls.push({ balance, kind, outcome, sentAt });
        }
      }),
    );
    console.log(`[${label}] ${calls.length} calls`, countBy(calls, (c) => `${c.kind}:${c.outcome.ok ? "ok" : c.outcome.reason}`));

    for (const c of calls) {
      if (c.outcome.ok) {
        expect(c.outcome.data.balance.balance_cents, label).toBeGreaterThanOrEqual(0);
        const stamped = Date.parse(c.outcome.data.transaction.created_at);
        expect(stamped, `${label}: a ${c.kind} went through after expires_at`).toBeLessThanOrEqual(created[c.balance]!.expiresAt.getTime() + STAMP_SLACK_MS);
      } else if (c.outcome.reason !== "INSUFFICIENT_BALANCE" && c.outcome.reason !== "BALANCE_NOT_ACTIVE") {
        expectRefused(c.outcome, "BALANCE_EXPIRED");
      }
    }
    // The race is real: money moved before expiry, and calls kept coming after it.
    const early = calls.filter((c) => c.outcome.ok);
    expect(early.length, label).toBeGreaterThan(0);
    // Calls sent after expires_at are refused as expired (before the sweep) or not active (after it), never served.
    const late = calls.filter((c) => c.sentAt > created[c.balance]!.expiresAt.getTime() + STAMP_SLACK_MS);
    expect(late.length, label).toBeGreaterThan(0);
    for (const c of late) {
      expect(c.outcome.ok, `${label}: served after expiry`).toBe(false);
      expect(["BALANCE_EXPIRED", "BALANCE_NOT_ACTIVE"], label).toContain(c.outcome.ok ? "ok" : c.outcome.reason);
    }

    await waitFor(
      "both sweepers to expire every balance",
      async () => {
        const rows = await d.sql<{ n: string }>(`select count(*)::text as n from account_balances where user_id = $1 and status = 'expired'`, [owner]);
        return rows[0]!.n === String(BALANCES);
      },
      10_000,
    );

    for (const [i, c] of created.entries()) {
      const [history, balance] = await Promise.all([historyOf(d, c.id), storedBalance(d, c.id)]);
      expect(chainProblems(history, balance), `${label}: chain of ${c.id}`).toEqual([]);
      expect(balance.status).toBe("expired");
      expect(balance.cents, `${label}: balance ${i}`).toBe(0n);
      const expirations = history.filter((t) => t.type === "expiration");
      expect(expirations.length, `${label}: expirations of ${c.id}`).toBeLessThanOrEqual(1);
      const beforeExpiry = history.filter((t) => t.type !== "expiration");
      const leftAtExpiry = beforeExpiry.at(-1)?.after ?? 0n;
      if (leftAtExpiry > 0n) {
        // The money left at expiry went out in one expiration, the last transaction, not before expires_at.
        expect(expirations).toHaveLength(1);
        expect(history.at(-1)).toMatchObject({ type: "expiration", amount: leftAtExpiry, after: 0n });
        expect(history.at(-1)!.createdAt.getTime()).toBeGreaterThanOrEqual(c.expiresAt.getTime());
      } else {
        expect(expirations).toHaveLength(0);
      }
      for (const t of beforeExpiry) {
        expect(t.createdAt.getTime(), `${label}: ${t.type} seq ${t.sequence} of ${c.id}`).toBeLessThanOrEqual(c.expiresAt.getTime() + STAMP_SLACK_MS);
      }
    }

    const verify = await runVerify(d.databaseUrl);
    expect(verify.code, verify.stderr).toBe(0);
    expect(verify.stdout).toContain(`verified ${BALANCES} balances, 0 with drift`);
  }, 60_000);

  it("each balance was expired by exactly one sweep across both processes; SIGTERM exits 0", async () => {
    for (const a of apis) a.close();
    const exits = await d.stop();
    let expired = 0;
    for (const e of exits) {
      expect({ code: e.code, signal: e.signal }, e.stderr.slice(-2000)).toEqual({ code: 0, signal: null });
      for (const m of e.stderr.matchAll(/expiry sweeper: expired (\d+) balance/g)) expired += Number(m[1]);
      expect(e.stderr).not.toMatch(/run failed/);
    }
    expect(expired).toBe(BALANCES);
  });
});
