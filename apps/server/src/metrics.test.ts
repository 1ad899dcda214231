import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "./testing/server.js";
import { createApi, type Api } from "./testing/protocols.js";
import { HTTP_RULES } from "./testing/routes.js";
import { expectOk } from "./testing/expect.js";

// GET /metrics of a real server after real calls over each protocol: the counters carry the
// method, the protocol the call came in on and its final status code.

let server: TestServer;
let api: Api;
let balanceId: string;

beforeAll(async () => {
  server = await startTestServer();
  api = createApi(server.port, HTTP_RULES);
  const admin = { bearer: server.serviceToken };
  const created = expectOk(
    await api.call("rest", "CreateBalance", { user_id: "metrics_user", balance_type: "credits", currency: "EUR", balance_cents: 100 }, admin),
  );
  balanceId = created.data.id;
});

afterAll(async () => {
  api?.close();
  await server?.close();
});

async function scrape(): Promise<{ status: number; type: string | null; text: string }> {
  const res = await fetch(`${server.baseUrl}/metrics`);
  return { status: res.status, type: res.headers.get("content-type"), text: await res.text() };
}

/** The value of the sample `name{labels}` (labels in any order), or undefined. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`)) continue;
    const close = line.indexOf("} ");
    const body = line.slice(name.length + 1, close);
    const got = Object.fromEntries([...body.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([k, v]) => got[k] === v) && Object.keys(got).length === Object.keys(labels).length) {
      return Number(line.slice(close + 2));
    }
  }
  return undefined;
}

describe("GET /metrics", () => {
  it("counts RPCs by method, protocol and code, and movements by type and outcome", async () => {
    const admin = { bearer: server.serviceToken };
    for (const protocol of ["rest", "connect-json", "grpc"] as const) {
      expectOk(await api.call(protocol, "GetBalance", { id: balanceId }, admin));
      expectOk(await api.call(protocol, "DebitBalance", { id: balanceId, amount_cents: 1 }, admin));
    }
    // Refused twice: too little money (REST), then an unknown balance (gRPC).
    const poor = await api.call("rest", "DebitBalance", { id: balanceId, amount_cents: 1_000_000 }, admin);
    expect(poor.ok).toBe(false);
    const missing = await api.call("grpc", "GetBalance", { id: "bal_00000000000000000000000000" }, admin);
    expect(missing.ok).toBe(false);
    // No credentials: refused by the auth interceptor, still counted with its final code.
    expect((await api.call("connect-json", "GetBalance", { id: balanceId })).ok).toBe(false);
    expectOk(await api.call("grpc", "CreditBalance", { id: balanceId, amount_cents: 5 }, admin, { headers: { "idempotency-key": "m-1" } }));

    const { status, type, text } = await scrape();
    expect(status).toBe(200);
    expect(type).toContain("text/plain");

    const rpc = (method: string, protocol: string, code: string) =>
      sample(text, "account_balance_rpc_requests_total", { service: "AccountBalanceService", method, protocol, code });
    expect(rpc("GetBalance", "rest", "OK")).toBe(1);
    expect(rpc("GetBalance", "connect", "OK")).toBe(1);
    expect(rpc("GetBalance", "grpc", "OK")).toBe(1);
    expect(rpc("GetBalance", "grpc", "NotFound")).toBe(1);
    expect(rpc("GetBalance", "connect", "Unauthenticated")).toBe(1);
    expect(rpc("DebitBalance", "rest", "OK")).toBe(1);
    expect(rpc("DebitBalance", "connect", "OK")).toBe(1);
    expect(rpc("DebitBalance", "grpc", "OK")).toBe(1);
    expect(rpc("DebitBalance", "rest", "FailedPrecondition")).toBe(1);
    // CreateBalance in beforeAll came over REST.
    expect(rpc("CreateBalance", "rest", "OK")).toBe(1);

    const histogramCount = sample(text, "account_balance_rpc_duration_seconds_count", {
      service: "AccountBalanceService",
      method: "DebitBalance",
      protocol: "grpc",
      code: "OK",
    });
    expect(histogramCount).toBe(1);
    expect(text).toMatch(/account_balance_rpc_duration_seconds_bucket\{le="0.005",service="AccountBalanceService",method="DebitBalance",protocol="grpc",code="OK"\} \d/);

    const move = (type: string, outcome: string) => sample(text, "account_balance_ledger_movements_total", { type, outcome });
    expect(move("debit", "applied")).toBe(3);
    expect(move("debit", "insufficient_balance")).toBe(1);
    expect(move("credit", "applied")).toBe(1);

    // Pool gauges read the live pool (DB_POOL_MAX=5 in test servers); process metrics are there.
    expect(/^account_balance_db_pool_max (\d+)$/m.exec(text)?.[1]).toBe("5");
    expect(text).toMatch(/^account_balance_db_pool_used \d+/m);
    expect(text).toMatch(/^account_balance_db_pool_pending_acquires \d+/m);
    expect(text).toMatch(/^process_resident_memory_bytes \d+/m);
    expect(text).toMatch(/^process_cpu_seconds_total \d/m);
    expect(text).toContain("# TYPE account_balance_ledger_batch_size histogram");
    // Movements are group-committed by default: at least the three plain debits went through batches.
    const batches = Number(/^account_balance_ledger_batch_size_count (\d+)$/m.exec(text)?.[1]);
    const batched = Number(/^account_balance_ledger_batch_size_sum (\d+)$/m.exec(text)?.[1]);
    expect(batches).toBeGreaterThanOrEqual(1);
    expect(batched).toBeGreaterThanOrEqual(3);
  });

  it("replays are counted as replayed, not as a second movement", async () => {
    const admin = { bearer: server.serviceToken };
    const before = sample((await scrape()).text, "account_balance_ledger_movements_total", { type: "credit", outcome: "applied" }) ?? 0;
    const req = { id: balanceId, amount_cents: 7, idempotency_key: "m-replay" };
    expectOk(await api.call("connect-json", "CreditBalance", req, admin));
    expectOk(await api.call("connect-json", "CreditBalance", req, admin));
    const text = (await scrape()).text;
    expect(sample(text, "account_balance_ledger_movements_total", { type: "credit", outcome: "applied" })).toBe(before + 1);
    expect(sample(text, "account_balance_ledger_movements_total", { type: "credit", outcome: "replayed" })).toBe(1);
    const rows = await server.sql<{ n: string }>("select count(*) as n from account_transactions where account_balance_id = $1 and amount_cents = 7", [balanceId]);
    expect(rows[0]?.n).toBe("1");
  });

  it("answers only GET and HEAD", async () => {
    const res = await fetch(`${server.baseUrl}/metrics`, { method: "POST" });
    expect(res.status).toBe(405);
    const head = await fetch(`${server.baseUrl}/metrics`, { method: "HEAD" });
    expect(head.status).toBe(200);
  });
});

describe("with METRICS_TOKEN and CORS for every origin", () => {
  const token = "m".repeat(40);
  let guarded: TestServer;

  beforeAll(async () => {
    guarded = await startTestServer({ METRICS_TOKEN: token, CORS_ALLOWED_ORIGINS: "*" });
  });

  afterAll(async () => {
    await guarded?.close();
  });

  it("answers 401 without the token (a service token is not it), and the metrics with it", async () => {
    const url = `${guarded.baseUrl}/metrics`;
    for (const authorization of [undefined, `Bearer ${"x".repeat(40)}`, `Bearer ${guarded.serviceToken}`, token, `Basic ${token}`]) {
      const res = await fetch(url, { headers: authorization === undefined ? {} : { authorization } });
      expect([authorization, res.status]).toEqual([authorization, 401]);
      expect(res.headers.get("www-authenticate")).toBe('Bearer realm="metrics"');
      expect(await res.text()).not.toContain("account_balance_");
    }
    const ok = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
    expect(ok.status).toBe(200);
    expect(await ok.text()).toContain("account_balance_rpc_requests_total");
  });

  it("never lets a page on another origin read it, while the API stays open to such pages", async () => {
    const origin = "https://elsewhere.example";
    const read = await fetch(`${guarded.baseUrl}/metrics`, { headers: { origin, authorization: `Bearer ${token}` } });
    expect(read.status).toBe(200);
    expect(read.headers.get("access-control-allow-origin")).toBeNull();
    const preflight = await fetch(`${guarded.baseUrl}/metrics`, {
      method: "OPTIONS",
      headers: { origin, "access-control-request-method": "GET", "access-control-request-headers": "authorization" },
    });
    expect(preflight.headers.get("access-control-allow-origin")).toBeNull();
    const api = await fetch(`${guarded.baseUrl}/healthz`, { headers: { origin } });
    expect(api.headers.get("access-control-allow-origin")).toBe(origin);
  });
});
