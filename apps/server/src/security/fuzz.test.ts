import http from "node:http";
import v8 from "node:v8";
import vm from "node:vm";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fromBinary, type DescMethod } from "@bufbuild/protobuf";
import { startTestServer, type TestServer } from "../testing/server.js";
import { ROUTES } from "../testing/routes.js";
import {
  connectBinaryInput,
  connectJsonInput,
  enc,
  grpcInput,
  MUTATING,
  restInput,
  type AuthChoice,
  type BinaryInput,
  type ConnectJsonInput,
  type GrpcInput,
  type RestInput,
} from "./arbitraries.js";
import { AcceptedWrites, rowsAdded, snapshot, unexplainedWrites, type LedgerSnapshot } from "./ledger-snapshot.js";
import { connectH2, frame, http1, unframe, type H2 } from "./raw.js";

// Bad input, tried at scale: thousands of generated hostile requests per protocol against one
// server. None may be answered with a 5xx or INTERNAL/UNKNOWN, no refused request may leave a
// row behind, the server must still answer afterwards and its memory must not keep growing.
// FUZZ_RUNS (per protocol, default 2000) and FUZZ_SEED reproduce or widen a run.

const RUNS = Number(process.env.FUZZ_RUNS ?? 2000);
const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31);
const WARM_UP = Math.min(300, Math.floor(RUNS / 5));
const CONCURRENCY = 8;
const BASE = "/bridge-payment/account-balance";
// Bounds after a forced GC, measured against the state after the warm-up round. The server runs
// in this process, so the figures include the clients too: generous, but a leak of a few KiB per
// request (6,000 requests) would cross them.
const MAX_HEAP_GROWTH_MB = 50;
const MAX_RSS_GROWTH_MB = 150;

type Protocol = "rest" | "connect-json" | "connect-binary" | "grpc";

interface Stats {
  inputs: number;
  accepted: number;
  refused: number;
  byStatus: Record<string, number>;
  /** 5xx answers, INTERNAL/UNKNOWN codes, transport failures: must stay empty. */
  problems: string[];
}

let server: TestServer;
let agent: http.Agent;
let h2: H2;
let ownerId: string;
let ownerSid: string;
let adminSid: string;
let balanceId: string;
const accepted = new AcceptedWrites();
const stats: Record<Protocol, Stats> = {
  rest: newStats(),
  "connect-json": newStats(),
  "connect-binary": newStats(),
  grpc: newStats(),
};
let before: LedgerSnapshot;
let startCents: bigint;
const memory: { warm?: NodeJS.MemoryUsage; end?: NodeJS.MemoryUsage } = {};

function newStats(): Stats {
  return { inputs: 0, accepted: 0, refused: 0, byStatus: {}, problems: [] };
}

function count(s: Stats, key: string): void {
  s.byStatus[key] = (s.byStatus[key] ?? 0) + 1;
}

/** Garbage collection on demand: the flag can be set at run time, `gc` is then found in a fresh context. */
const gc: () => void = (() => {
  v8.setFlagsFromString("--expose-gc");
  return vm.runInNewContext("gc") as () => void;
})();

async function settledMemory(): Promise<NodeJS.MemoryUsage> {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 50));
  }
  return process.memoryUsage();
}

const mb = (n: number) => Math.round((n / 1024 / 1024) * 10) / 10;

/** Runs `fn` over `items`, `CONCURRENCY` at a time. */
async function pool<T>(items: readonly T[], fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
}

function credentials(auth: AuthChoice): { headers: Record<string, string>; query: string } {
  switch (auth.kind) {
    case "owner":
      return { headers: { "x-session-id": ownerSid }, query: "" };
    case "admin":
      return { headers: { "x-session-id": adminSid }, query: "" };
    case "service":
      return { headers: { authorization: `Bearer ${server.serviceToken}` }, query: "" };
    case "owner-cookie":
      return { headers: { cookie: `theme=dark; session_id=${ownerSid}` }, query: "" };
    case "owner-query":
      return { headers: {}, query: `session_id=${encodeURIComponent(ownerSid)}` };
    case "garbage-session":
      return { headers: { "x-session-id": auth.value }, query: "" };
    case "garbage-bearer":
      return { headers: { authorization: `Bearer ${auth.value}` }, query: "" };
    case "garbage-cookie":
      return { headers: { cookie: `session_id=${auth.value}` }, query: "" };
    case "none":
      return { headers: {}, query: "" };
  }
}

/** No stack traces, driver text or SQL in an answer. */
function leaksInternals(text: string): boolean {
  return /\bat [^\n]*\.(js|ts):\d+|node_modules|violates [a-z ]*constraint|\binsert into\b|syntax error at or near|ECONNREFUSED/i.test(text);
}

function jsonOf(bytes: Buffer): any {
  try {
    return JSON.parse(bytes.toString("utf8"));
  } catch {
    return undefined;
  }
}

function keysOfJson(body: Buffer | undefined): string[] {
  const o = body === undefined ? undefined : jsonOf(body);
  if (o === null || typeof o !== "object") return [];
  return [o.idempotency_key, o.idempotencyKey].filter((k): k is string => typeof k === "string");
}

function keysOfBinary(method: DescMethod, payload: Buffer): string[] {
  try {
    const msg = fromBinary(method.input, payload) as { idempotencyKey?: string };
    return msg.idempotencyKey === undefined ? [] : [msg.idempotencyKey];
  } catch {
    return [];
  }
}

const ROUTE_PATTERNS = ROUTES.map((r) => ({
  route: r,
  vars: (r.path.match(/\{/g) ?? []).length,
  re: new RegExp(`^${r.path === "/" ? "/?" : r.path.replace(/\{[a-z_]+\}/g, "[^/]+")}$`),
}));

/** The RPC a REST request reaches (literal segments win, as in the gateway). */
function restRpc(method: string, relative: string): string | undefined {
  const hits = ROUTE_PATTERNS.filter((p) => p.route.http === method && p.re.test(relative)).sort((a, b) => a.vars - b.vars);
  return hits[0]?.route.rpc;
}

// ------------------------------------------------------------------ protocol runners

async function restOne(i: RestInput): Promise<void> {
  const s = stats.rest;
  s.inputs++;
  const method = i.method ?? i.route.http;
  const relative = i.route.path === "/" ? "" : i.route.path.replace("{id}", i.id).replace("{user_id}", i.userId);
  const cred = credentials(i.auth);
  const query = cred.query === "" ? i.query : i.query === "" ? `?${cred.query}` : `${i.query}&${cred.query}`;
  const headers: Record<string, string> = { ...i.headers, ...cred.headers };
  if (i.contentType) headers["content-type"] = i.contentType;
  const body = method === "HEAD" || method === "GET" ? undefined : i.body?.bytes;
  const what = `${method} ${relative.slice(0, 80)}${query.slice(0, 80)} body=${i.body?.shape ?? "none"} auth=${i.auth.kind}`;
  let reply;
  try {
    reply = await http1(agent, server.port, { method, path: `${BASE}${relative}${query}`, headers, body });
  } catch (err) {
    s.problems.push(`${what}: no answer (${err instanceof Error ? err.message : String(err)})`);
    return;
  }
  count(s, String(reply.status));
  const text = reply.body.toString("utf8");
  const json = jsonOf(reply.body);
  if (reply.status >= 500) s.problems.push(`${what}: HTTP ${reply.status} ${text.slice(0, 200)}`);
  else if (json?.code === "INTERNAL") s.problems.push(`${what}: code INTERNAL ${text.slice(0, 200)}`);
  else if (leaksInternals(text)) s.problems.push(`${what}: internals in the answer ${text.slice(0, 200)}`);
  if (reply.status >= 200 && reply.status < 300) {
    s.accepted++;
    const rpc = restRpc(method, relative === "" ? "/" : relative);
    if (rpc !== undefined && MUTATING.has(rpc)) accepted.record(json, [headers["idempotency-key"], ...keysOfJson(body)]);
  } else {
    s.refused++;
  }
}

async function connectJsonOne(i: ConnectJsonInput): Promise<void> {
  const s = stats["connect-json"];
  s.inputs++;
  const path = i.method ? `/${i.method.parent.typeName}/${i.method.name}` : "/accountbalance.v1.AccountBalanceService/NoSuchMethod";
  const cred = credentials(i.auth);
  const headers: Record<string, string> = { ...i.headers, ...cred.headers, "connect-protocol-version": "1" };
  let url = path;
  let body: Buffer | undefined = i.body.bytes;
  if (i.get) {
    url += `?connect=v1&encoding=json&message=${enc(i.body.bytes.toString("latin1"))}${cred.query ? `&${cred.query}` : ""}`;
    body = undefined;
  } else {
    headers["content-type"] = i.contentType;
    if (cred.query) url += `?${cred.query}`;
  }
  const what = `${i.get ? "GET" : "POST"} ${path} body=${i.body.shape} ct=${i.contentType} auth=${i.auth.kind}`;
  let reply;
  try {
    reply = await http1(agent, server.port, { method: i.get ? "GET" : "POST", path: url, headers, body });
  } catch (err) {
    s.problems.push(`${what}: no answer (${err instanceof Error ? err.message : String(err)})`);
    return;
  }
  count(s, String(reply.status));
  const text = reply.body.toString("utf8");
  const json = jsonOf(reply.body);
  const late = reply.status === 504 && json?.code === "deadline_exceeded" ? deadlineAnswer(headers["connect-timeout-ms"], "1") : undefined;
  if (late === "uncertain" && i.method && MUTATING.has(i.method.name)) accepted.uncertain++;
  if (late === "not run" || late === "uncertain") {
    // the input's own deadline: the right answer
  } else if (reply.status >= 500) s.problems.push(`${what}: HTTP ${reply.status} ${text.slice(0, 200)}`);
  else if (json?.code === "internal" || json?.code === "unknown") s.problems.push(`${what}: code ${json.code} ${text.slice(0, 200)}`);
  else if (leaksInternals(text)) s.problems.push(`${what}: internals in the answer ${text.slice(0, 200)}`);
  if (reply.status === 200) {
    s.accepted++;
    if (i.method && MUTATING.has(i.method.name)) accepted.record(json, [headers["idempotency-key"], ...keysOfJson(body)]);
  } else {
    s.refused++;
  }
}

async function connectBinaryOne(i: BinaryInput): Promise<void> {
  const s = stats["connect-binary"];
  s.inputs++;
  const path = `/${i.method.parent.typeName}/${i.method.name}`;
  const headers: Record<string, string> = { ...i.headers, ...credentials(i.auth).headers, "content-type": i.contentType, "connect-protocol-version": "1" };
  const what = `${path} payload=${i.payload.shape} ct=${i.contentType} auth=${i.auth.kind}`;
  let reply;
  try {
    reply = await http1(agent, server.port, { method: "POST", path, headers, body: i.payload.bytes });
  } catch (err) {
    s.problems.push(`${what}: no answer (${err instanceof Error ? err.message : String(err)})`);
    return;
  }
  count(s, String(reply.status));
  const json = reply.status === 200 ? undefined : jsonOf(reply.body);
  const text = reply.status === 200 ? "" : reply.body.toString("utf8");
  const late = reply.status === 504 && json?.code === "deadline_exceeded" ? deadlineAnswer(headers["connect-timeout-ms"], "1") : undefined;
  if (late === "uncertain" && MUTATING.has(i.method.name)) accepted.uncertain++;
  if (late === "not run" || late === "uncertain") {
    // the input's own deadline: the right answer
  } else if (reply.status >= 500) s.problems.push(`${what}: HTTP ${reply.status} ${text.slice(0, 200)}`);
  else if (json?.code === "internal" || json?.code === "unknown") s.problems.push(`${what}: code ${json.code} ${text.slice(0, 200)}`);
  else if (leaksInternals(text)) s.problems.push(`${what}: internals in the answer ${text.slice(0, 200)}`);
  if (reply.status === 200) {
    s.accepted++;
    if (MUTATING.has(i.method.name)) {
      accepted.record(fromBinary(i.method.output, reply.body), [headers["idempotency-key"], ...keysOfBinary(i.method, i.payload.bytes)]);
    }
  } else {
    s.refused++;
  }
}

const GRPC_DEADLINE_EXCEEDED = 4;

/**
 * How an answer of DEADLINE_EXCEEDED stands to the deadline the input itself set: "not run"
 * for one already passed (0), "uncertain" for one so short (1 ms; gRPC 1 s) that the call may
 * have been answered after its write started, which may then have taken effect; "fault" for
 * any other (the server's own cap is 30 s: such an answer would be a hang).
 */
function deadlineAnswer(timeout: string | undefined, short: string): "not run" | "uncertain" | "fault" {
  if (timeout === "0" || timeout === "0n") return "not run";
  return timeout === short ? "uncertain" : "fault";
}const GRPC_FORBIDDEN = new Map([
  [2, "UNKNOWN"],
  [13, "INTERNAL"],
  [15, "DATA_LOSS"],
]);

async function grpcOne(i: GrpcInput): Promise<void> {
  const s = stats.grpc;
  s.inputs++;
  const path = `/${i.method.parent.typeName}/${i.method.name}`;
  const headers: Record<string, string> = { ...credentials(i.auth).headers, "content-type": i.contentType };
  if (i.grpcEncoding !== undefined) headers["grpc-encoding"] = i.grpcEncoding;
  if (i.grpcTimeout !== undefined) headers["grpc-timeout"] = i.grpcTimeout;
  const opts: { flag: number; length?: number } = { flag: i.flag };
  if (i.declaredLength !== undefined) opts.length = i.declaredLength;
  const body = Buffer.concat([frame(i.payload.bytes, opts), i.trailing]);
  const what = `${path} payload=${i.payload.shape} flag=${i.flag} len=${i.declaredLength ?? "real"} trailing=${i.trailing.length} ct=${i.contentType} enc=${i.grpcEncoding ?? "-"} auth=${i.auth.kind}`;
  let reply;
  try {
    reply = await h2.call(path, headers, body);
  } catch (err) {
    s.problems.push(`${what}: no answer (${err instanceof Error ? err.message : String(err)})`);
    return;
  }
  count(s, reply.grpcStatus === undefined ? `http ${reply.httpStatus}` : `grpc ${reply.grpcStatus}`);
  const late = reply.grpcStatus === GRPC_DEADLINE_EXCEEDED ? deadlineAnswer(i.grpcTimeout, "1S") : undefined;
  if (late === "uncertain" && MUTATING.has(i.method.name)) accepted.uncertain++;
  if (late === "fault") s.problems.push(`${what}: DEADLINE_EXCEEDED with grpc-timeout ${i.grpcTimeout ?? "none"}`);
  else if (reply.httpStatus >= 500) s.problems.push(`${what}: HTTP ${reply.httpStatus}`);
  else if (reply.httpStatus === 200 && reply.grpcStatus === undefined) s.problems.push(`${what}: an answer without grpc-status`);
  else if (reply.grpcStatus !== undefined && GRPC_FORBIDDEN.has(reply.grpcStatus)) {
    s.problems.push(`${what}: ${GRPC_FORBIDDEN.get(reply.grpcStatus)} "${reply.grpcMessage ?? ""}"`);
  } else if (leaksInternals(decodeURIComponent(reply.grpcMessage ?? ""))) {
    s.problems.push(`${what}: internals in grpc-message ${reply.grpcMessage}`);
  }
  if (reply.grpcStatus === 0) {
    s.accepted++;
    if (MUTATING.has(i.method.name)) {
      const [message] = unframe(reply.data);
      accepted.record(message ? fromBinary(i.method.output, message) : undefined, [keysOfBinary(i.method, i.payload.bytes)[0]]);
    }
  } else {
    s.refused++;
  }
}

// ------------------------------------------------------------------ the run

beforeAll(async () => {
  server = await startTestServer({ LOG_LEVEL: "info" });
  agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  h2 = await connectH2(server.port);
  ownerId = "fuzz-owner";
  ownerSid = await server.mintSession(ownerId, "customer");
  adminSid = await server.mintSession("fuzz-admin", "admin");
  const created = await fetch(`${server.baseUrl}${BASE}`, {
    method: "POST",
    headers: { authorization: `Bearer ${server.serviceToken}`, "content-type": "application/json" },
    body: JSON.stringify({ user_id: ownerId, currency: "EUR", balance_cents: 1_000_000 }),
  });
  expect(created.status).toBe(201);
  balanceId = ((await created.json()) as { data: { id: string } }).data.id;
  before = await snapshot(server);
  const [start] = await server.sql<{ c: string }>("select balance_cents::text as c from account_balances where id = $1", [balanceId]);
  startCents = BigInt(start!.c);
});

afterAll(async () => {
  await h2?.close();
  agent?.destroy();
  await server?.close();
});

describe(`fuzzing every protocol (${RUNS} inputs each, seed ${SEED})`, () => {
  it("never answers 5xx / INTERNAL, writes nothing on a refusal, stays up with flat memory", { timeout: 240_000 }, async () => {
    const inputs = {
      rest: fc.sample(restInput(balanceId, ownerId), { numRuns: RUNS, seed: SEED }),
      connectJson: fc.sample(connectJsonInput(balanceId, ownerId), { numRuns: RUNS, seed: SEED + 1 }),
      connectBinary: fc.sample(connectBinaryInput(balanceId, ownerId), { numRuns: RUNS, seed: SEED + 2 }),
      grpc: fc.sample(grpcInput(balanceId, ownerId), { numRuns: RUNS, seed: SEED + 3 }),
    };
    const round = async (from: number, to: number) => {
      await pool(inputs.rest.slice(from, to), restOne);
      await pool(inputs.connectJson.slice(from, to), connectJsonOne);
      await pool(inputs.connectBinary.slice(from, to), connectBinaryOne);
      await pool(inputs.grpc.slice(from, to), grpcOne);
    };
    const started = Date.now();
    await round(0, WARM_UP);
    memory.warm = await settledMemory();
    await round(WARM_UP, RUNS);
    memory.end = await settledMemory();
    const after = await snapshot(server);

    // Still up, on both HTTP versions.
    expect((await fetch(`${server.baseUrl}/healthz`)).status).toBe(200);
    const health = await h2.call("/grpc.health.v1.Health/Check", {}, frame(Buffer.alloc(0)));
    expect(health.grpcStatus).toBe(0);

    const report = {
      seed: SEED,
      seconds: Math.round((Date.now() - started) / 100) / 10,
      perProtocol: Object.fromEntries(
        Object.entries(stats).map(([p, s]) => [p, { inputs: s.inputs, accepted: s.accepted, refused: s.refused, problems: s.problems.length, byStatus: s.byStatus }]),
      ),
      acceptedMutations: accepted.count,
      uncertainMutations: accepted.uncertain,
      rowsAdded: rowsAdded(before, after),
      memoryMB: {
        heapUsedAfterWarmUp: mb(memory.warm.heapUsed),
        heapUsedAtEnd: mb(memory.end.heapUsed),
        rssAfterWarmUp: mb(memory.warm.rss),
        rssAtEnd: mb(memory.end.rss),
      },
    };
    console.log(`fuzz report ${JSON.stringify(report, null, 2)}`);

    const problems = Object.entries(stats).flatMap(([p, s]) => s.problems.map((x) => `${p}: ${x}`));
    // Distinct problems first (the same bug tends to repeat), then the verdict.
    const distinct = [...new Set(problems.map((p) => p.replace(/bal_[0-9A-Z]{26}/g, "bal_…")))].slice(0, 40);
    if (problems.length > 0) console.log(`fuzz problems (${problems.length}):\n${problems.join("\n")}`);
    expect.soft(distinct, `seed ${SEED}: ${problems.length} bad answers`).toEqual([]);

    // A write answered DEADLINE_EXCEEDED at the input's own 1 ms deadline may have taken
    // effect: each such call may account for a balance, a transaction and a key of its own.
    const unexplained = unexplainedWrites(before, after, accepted);
    if (accepted.uncertain === 0) expect.soft(unexplained, "rows written by refused requests").toEqual([]);
    else expect.soft(unexplained.length, `rows written by refused requests: ${unexplained.join("; ")}`).toBeLessThanOrEqual(3 * accepted.uncertain);
    // The fixture balance's money still adds up: its balance moved by exactly its new movements.
    const [row] = await server.sql<{ balance: string; moved: string }>(
      `select b.balance_cents::text as balance,
              coalesce(sum(case when t.transaction_type = 'credit' then t.amount_cents else -t.amount_cents end)
                       filter (where not (t.id = any($2::text[]))), 0)::text as moved
         from account_balances b left join account_transactions t on t.account_balance_id = b.id
        where b.id = $1 group by b.id`,
      [balanceId, [...before.transactions]],
    );
    expect.soft(BigInt(row!.balance)).toBe(startCents + BigInt(row!.moved));

    for (const p of Object.keys(stats) as Protocol[]) expect(stats[p].inputs).toBe(RUNS);
    expect.soft(mb(memory.end.heapUsed - memory.warm.heapUsed), "heap growth (MB) after GC").toBeLessThan(MAX_HEAP_GROWTH_MB);
    expect.soft(mb(memory.end.rss - memory.warm.rss), "RSS growth (MB) after GC").toBeLessThan(MAX_RSS_GROWTH_MB);
  });
});
