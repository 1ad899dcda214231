import pg from "pg";
import { create, toBinary } from "@bufbuild/protobuf";
import { GetBalanceRequestSchema } from "@account-balance/proto/accountbalance/v1/account_balance_service_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../testing/server.js";

// A call that waits on the database past its deadline (REQUEST_TIMEOUT_MS, or a shorter client
// deadline) is answered DEADLINE_EXCEEDED then, on every protocol, instead of whenever the
// database lets it go. A write answered so may still take effect: a retry with the same
// idempotency key tells.

const BASE = "/bridge-payment/account-balance";
const SERVICE = "/accountbalance.v1.AccountBalanceService";
let server: TestServer;
let balanceId: string;
let sid: string;

beforeAll(async () => {
  server = await startTestServer({ REQUEST_TIMEOUT_MS: "800" });
  sid = await server.mintSession("deadline-owner");
  const res = await fetch(`${server.baseUrl}${BASE}`, {
    method: "POST",
    headers: { authorization: `Bearer ${server.serviceToken}`, "content-type": "application/json" },
    body: JSON.stringify({ user_id: "deadline-owner", currency: "EUR", balance_cents: 1000 }),
  });
  balanceId = ((await res.json()) as { data: { id: string } }).data.id;
});

afterAll(async () => {
  await server?.close();
});

/** Holds the whole balances table for `ms` (reads and writes wait), then lets go. */
async function holdTable(ms: number): Promise<{ released: Promise<void> }> {
  const client = new pg.Client({ connectionString: server.databaseUrl });
  await client.connect();
  await client.query("begin");
  await client.query("lock table account_balances in access exclusive mode");
  const released = new Promise<void>((resolve) => setTimeout(resolve, ms))
    .then(() => client.query("commit"))
    .then(() => client.end());
  return { released };
}

describe("a call held up by the database past its deadline", () => {
  it("REST: 504 at REQUEST_TIMEOUT_MS, and the write still lands once when the lock goes", async () => {
    const { released } = await holdTable(2_500);
    const started = Date.now();
    const [read, credit] = await Promise.all([
      fetch(`${server.baseUrl}${BASE}/${balanceId}`, { headers: { "x-session-id": sid } }),
      fetch(`${server.baseUrl}${BASE}/${balanceId}/credit`, {
        method: "POST",
        headers: { authorization: `Bearer ${server.serviceToken}`, "content-type": "application/json", "idempotency-key": "late-1" },
        body: JSON.stringify({ amount_cents: 7 }),
      }),
    ]);
    const took = Date.now() - started;
    expect(read.status).toBe(504);
    expect(credit.status).toBe(504);
    expect(await credit.json()).toMatchObject({ success: false, code: "UNAVAILABLE" });
    expect(took).toBeLessThan(2_000);
    await released;
    // The retry with the same key replays what the first call did once the table was free.
    const retry = await fetch(`${server.baseUrl}${BASE}/${balanceId}/credit`, {
      method: "POST",
      headers: { authorization: `Bearer ${server.serviceToken}`, "content-type": "application/json", "idempotency-key": "late-1" },
      body: JSON.stringify({ amount_cents: 7 }),
    });
    expect(retry.status).toBe(200);
    const rows = await server.sql<{ n: string }>("select count(*)::text as n from account_transactions where account_balance_id = $1 and transaction_type = 'credit'", [balanceId]);
    expect(rows[0]!.n).toBe("1");
  });

  it("Connect: a client deadline shorter than the cap is answered at that deadline", async () => {
    const { released } = await holdTable(2_000);
    const started = Date.now();
    const res = await fetch(`${server.baseUrl}${SERVICE}/GetBalance`, {
      method: "POST",
      headers: { "x-session-id": sid, "content-type": "application/json", "connect-timeout-ms": "300" },
      body: JSON.stringify({ id: balanceId }),
    });
    const took = Date.now() - started;
    expect(res.status).toBe(504);
    expect(await res.json()).toMatchObject({ code: "deadline_exceeded" });
    expect(took).toBeLessThan(750);
    await released;
  });

  it("gRPC-Web (connect's own handler): answered DEADLINE_EXCEEDED at the client's deadline, and counted so", async () => {
    const { released } = await holdTable(2_000);
    const message = toBinary(GetBalanceRequestSchema, create(GetBalanceRequestSchema, { id: balanceId }));
    const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, message.length]), message]);
    const started = Date.now();
    const res = await fetch(`${server.baseUrl}${SERVICE}/GetBalance`, {
      method: "POST",
      headers: { "x-session-id": sid, "content-type": "application/grpc-web+proto", "x-grpc-web": "1", "grpc-timeout": "300m" },
      body: frame,
    });
    const body = Buffer.from(await res.arrayBuffer()).toString("latin1");
    const took = Date.now() - started;
    // Trailers-only in the headers, or a trailer frame in the body.
    const status = res.headers.get("grpc-status") ?? /grpc-status:\s*(\d+)/i.exec(body)?.[1];
    expect(status).toBe("4");
    expect(took).toBeLessThan(750);
    await released;
    const metrics = await (await fetch(`${server.baseUrl}/metrics`)).text();
    expect(metrics).toMatch(/account_balance_rpc_requests_total\{[^}]*method="GetBalance"[^}]*code="DeadlineExceeded"[^}]*\} [1-9]/);
  });
});
