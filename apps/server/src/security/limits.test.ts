import http from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create, toBinary } from "@bufbuild/protobuf";
import { GetBalanceRequestSchema } from "@account-balance/proto/accountbalance/v1/account_balance_service_pb.js";
import { startTestServer, type TestServer } from "../testing/server.js";
import { closedAt, collect, connectH2, frame, http1, openSocket } from "./raw.js";

// Oversized bodies are refused early, and slow or idle clients cannot starve the server.
// MAX_REQUEST_BYTES is small here (4 KiB) and REQUEST_TIMEOUT_MS 2 s. The header timeout
// (10 s) is the transport's default: no variable sets it, so the idle and slowloris cases wait
// for it.

const BASE = "/bridge-payment/account-balance";
const MAX = 4096;
const HEADERS_TIMEOUT_MS = 10_000;
const REQUEST_TIMEOUT_MS = 2000;

let server: TestServer;
let sid: string;
let agent: http.Agent;

async function rowCount(): Promise<string> {
  const [r] = await server.sql<{ n: string }>(
    "select concat_ws('/', (select count(*) from account_balances), (select count(*) from account_transactions), (select count(*) from idempotency_keys)) as n",
  );
  return r!.n;
}

beforeAll(async () => {
  server = await startTestServer({ MAX_REQUEST_BYTES: String(MAX), REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS), LOG_LEVEL: "info" });
  sid = await server.mintSession("limits-owner");
  agent = new http.Agent({ keepAlive: false });
});

afterAll(async () => {
  agent?.destroy();
  await server?.close();
});

const big = JSON.stringify({ currency: "EUR", metadata: { note: "x".repeat(MAX) } });
const getBalance = (id: string) => toBinary(GetBalanceRequestSchema, create(GetBalanceRequestSchema, { id }));

describe("oversized bodies", () => {
  it("REST: 413 with the envelope, nothing written", async () => {
    const before = await rowCount();
    const r = await http1(agent, server.port, { method: "POST", path: BASE, headers: { "x-session-id": sid, "content-type": "application/json" }, body: big });
    expect(r.status).toBe(413);
    expect(JSON.parse(r.body.toString())).toMatchObject({ success: false, error: `request body larger than ${MAX} bytes` });
    // Just under the limit is read and handled (here: created).
    const fits = JSON.stringify({ currency: "EUR", metadata: { note: "x".repeat(1000) } });
    const ok = await http1(agent, server.port, { method: "POST", path: BASE, headers: { "x-session-id": sid, "content-type": "application/json" }, body: fits });
    expect(ok.status).toBe(201);
    const [, ...rest] = (await rowCount()).split("/");
    expect(rest).toEqual(before.split("/").slice(1));
  });

  it("Connect JSON and binary: resource_exhausted, nothing written", async () => {
    const before = await rowCount();
    for (const [ct, body] of [
      ["application/json", Buffer.from(big)],
      ["application/proto", Buffer.alloc(MAX + 100, 0x0a)],
    ] as const) {
      const r = await http1(agent, server.port, {
        method: "POST",
        path: "/accountbalance.v1.AccountBalanceService/CreateBalance",
        headers: { "x-session-id": sid, "content-type": ct, "connect-protocol-version": "1" },
        body,
      });
      expect(r.status, ct).toBeLessThan(500);
      expect(JSON.parse(r.body.toString()).code, ct).toBe("resource_exhausted");
    }
    expect(await rowCount()).toBe(before);
  });

  it("gRPC: RESOURCE_EXHAUSTED for a message past the limit", async () => {
    const h2 = await connectH2(server.port);
    try {
      const r = await h2.call("/accountbalance.v1.AccountBalanceService/CreateBalance", { "x-session-id": sid }, frame(Buffer.alloc(MAX + 100, 0x0a)));
      expect(r.grpcStatus).toBe(8);
    } finally {
      await h2.close();
    }
  });

  it("a huge declared size is refused at once, without waiting for (or reading) the body", async () => {
    // HTTP/1.1, REST and Connect: headers only, then silence. The answer must come anyway.
    for (const path of [BASE, "/accountbalance.v1.AccountBalanceService/CreateBalance"]) {
      const socket = await openSocket(server.port);
      const got = collect(socket);
      const started = Date.now();
      socket.write(
        `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnect-Protocol-Version: 1\r\n` +
          `X-Session-ID: ${sid}\r\nContent-Length: 1000000000000\r\n\r\n`,
      );
      while (!/\r\n\r\n.*\}/s.test(got.text()) && Date.now() - started < 3000) await new Promise((r) => setTimeout(r, 20));
      expect(Date.now() - started, path).toBeLessThan(1000);
      expect(got.text(), path).toMatch(path === BASE ? /^HTTP\/1\.1 413 / : /^HTTP\/1\.1 (413|429) [\s\S]*resource_exhausted/);
      socket.destroy();
    }
    // gRPC: a frame header that announces 4 GiB and nothing after it. (A stream that then stays
    // open is never answered: see the REQUEST_TIMEOUT_MS case below.)
    const h2 = await connectH2(server.port);
    try {
      const started = Date.now();
      const head = frame(Buffer.alloc(0), { length: 0xffffffff });
      const r = await h2.call("/accountbalance.v1.AccountBalanceService/CreateBalance", { "x-session-id": sid }, head, { timeoutMs: 3000 });
      expect(r.grpcStatus).toBe(8);
      expect(Date.now() - started).toBeLessThan(1000);
    } finally {
      await h2.close();
    }
  });
});

describe("slow and idle clients", () => {
  it(
    "idle sockets, slowloris headers and a torn HTTP/2 preface are cut at the header timeout while others are served",
    { timeout: 30_000 },
    async () => {
      const started = Date.now();
      // Idle: connect, say nothing.
      const idle = await Promise.all(Array.from({ length: 5 }, () => openSocket(server.port)));
      // Slowloris: a request line, then one header byte every 300 ms, forever.
      const slow = await Promise.all(Array.from({ length: 20 }, () => openSocket(server.port)));
      const drips: NodeJS.Timeout[] = [];
      for (const s of slow) {
        s.on("error", () => undefined);
        s.write(`GET ${BASE}/me/balances HTTP/1.1\r\nHost: x\r\nX-Slow: `);
        drips.push(setInterval(() => !s.destroyed && s.write("a"), 300));
      }
      // Half an HTTP/2 preface: the server cannot even tell the protocol.
      const torn = await openSocket(server.port);
      torn.on("error", () => undefined);
      torn.write("PRI * HTTP/2.0\r\n");
      const closes = [...idle, ...slow, torn].map((s) => closedAt(s, started));

      // Meanwhile, ordinary callers on both HTTP versions get answers quickly.
      const h2 = await connectH2(server.port);
      const latencies: number[] = [];
      const ticker = (async () => {
        while (Date.now() - started < HEADERS_TIMEOUT_MS + 1000) {
          const t = Date.now();
          const r = await http1(agent, server.port, { method: "GET", path: `${BASE}/me/balances`, headers: { "x-session-id": sid } });
          expect(r.status).toBe(200);
          const g = await h2.call("/accountbalance.v1.AccountBalanceService/GetBalance", { "x-session-id": sid }, frame(getBalance(`bal_${"0".repeat(26)}`)));
          expect(g.grpcStatus).toBe(5);
          latencies.push(Date.now() - t);
          await new Promise((r) => setTimeout(r, 250));
        }
      })();

      const closedAfter = await Promise.all(closes);
      drips.forEach(clearInterval);
      await ticker;
      await h2.close();
      console.log(`slow clients: closed after ${Math.min(...closedAfter)}-${Math.max(...closedAfter)} ms; ordinary calls: ${latencies.length}, slowest ${Math.max(...latencies)} ms`);
      for (const ms of closedAfter) {
        expect(ms).toBeGreaterThanOrEqual(HEADERS_TIMEOUT_MS - 500);
        expect(ms).toBeLessThan(HEADERS_TIMEOUT_MS + 2500);
      }
      expect(latencies.length).toBeGreaterThan(10);
      expect(Math.max(...latencies)).toBeLessThan(1000);
    },
  );

  it("HTTP/2 streams that never send their body do not block other streams or connections", { timeout: 20_000 }, async () => {
    const stalled = await connectH2(server.port);
    const pending = Array.from({ length: 100 }, () =>
      stalled
        .call("/accountbalance.v1.AccountBalanceService/GetBalance", { "x-session-id": sid }, Buffer.alloc(0), { endStream: false, timeoutMs: 15_000 })
        .catch(() => undefined),
    );
    const other = await connectH2(server.port);
    try {
      for (const h2 of [stalled, other]) {
        const t = Date.now();
        const r = await h2.call("/accountbalance.v1.AccountBalanceService/GetBalance", { "x-session-id": sid }, frame(getBalance(`bal_${"0".repeat(26)}`)));
        expect(r.grpcStatus).toBe(5);
        expect(Date.now() - t).toBeLessThan(1000);
      }
      const r = await fetch(`${server.baseUrl}/healthz`);
      expect(r.status).toBe(200);
    } finally {
      stalled.session.destroy();
      await Promise.all(pending);
      await other.close();
    }
  });

  it("HTTP/2 streams that stall are ended by the server within REQUEST_TIMEOUT_MS", { timeout: 20_000 }, async () => {
    // Without this, each such stream holds a slot (1,000 per connection) and keeps its
    // connection from ever being idle, for as long as the client likes. Two ways to stall:
    // a frame shorter than it says, and a 4 GiB frame header followed by more than
    // MAX_REQUEST_BYTES (HTTP/2 flow control then stops the client; nobody ends the stream).
    const stalls = {
      "a torn frame": frame(getBalance("bal_x"), { length: 100 }),
      "a 4 GiB frame header and 8 KiB": frame(Buffer.alloc(2 * MAX), { length: 0xffffffff }),
    };
    const h2 = await connectH2(server.port);
    try {
      const results = await Promise.all(
        Object.entries(stalls).map(async ([what, body]) => {
          const t = Date.now();
          const r = await h2
            .call("/accountbalance.v1.AccountBalanceService/CreateBalance", { "x-session-id": sid }, body, {
              endStream: false,
              timeoutMs: REQUEST_TIMEOUT_MS + 5000,
            })
            .then(
              (reply) => `grpc-status ${reply.grpcStatus} after ${Date.now() - t} ms`,
              () => `no answer after ${Date.now() - t} ms`,
            );
          return `${what}: ${r}`;
        }),
      );
      for (const r of results) expect.soft(r).toMatch(/grpc-status (4|8|3) after (\d{1,3}|[1-4]\d{3}) ms$/);
    } finally {
      h2.session.destroy();
    }
  });
});
