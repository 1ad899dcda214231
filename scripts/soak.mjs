#!/usr/bin/env node
// Soak: measures the service's maximum throughput for credits and debits (closed loop), then
// holds a fraction of it (default 50%) open-loop for --minutes and reports, per window,
// errors, latency percentiles (p99 measured from each request's scheduled start, so a stall
// is not hidden by fewer requests being sent) and the server's RSS. Not part of CI.
//
//   pnpm turbo run build --filter=@account-balance/server...
//   node scripts/soak.mjs [--minutes 5] [--measure-seconds 20] [--workers 32] [--fraction 0.5]
//                         [--window-seconds 30] [--json out.json]
//
// By default it starts `node apps/server/dist/main.js` itself, on DATABASE_URL when that is
// set or else on an embedded PostgreSQL in a temp folder, and reads RSS from /proc/<pid>/status.
// Against a running server: --base-url http://host:port --token <a SERVICE_TOKENS entry> [--pid <server pid>].
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    minutes: { type: "string", default: "5" },
    "measure-seconds": { type: "string", default: "20" },
    workers: { type: "string", default: "32" },
    fraction: { type: "string", default: "0.5" },
    "window-seconds": { type: "string", default: "30" },
    balances: { type: "string", default: "64" },
    "base-url": { type: "string" },
    token: { type: "string" },
    pid: { type: "string" },
    json: { type: "string" },
  },
});
const num = (name, min) => {
  const n = Number(values[name]);
  if (!Number.isFinite(n) || n < min) fail(`--${name} must be a number >= ${min}`);
  return n;
};
function fail(msg) {
  process.stderr.write(`soak: ${msg}\n`);
  process.exit(2);
}
const minutes = num("minutes", 0.1);
const measureSeconds = num("measure-seconds", 1);
const workers = num("workers", 1);
const fraction = num("fraction", 0.01);
const windowSeconds = num("window-seconds", 1);
const balanceCount = num("balances", 1);
const BASE = "/bridge-payment/account-balance";
const log = (line) => process.stderr.write(`[soak] ${line}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- the server under test --------------------------------------------------------------
let server; // { baseUrl, token, pid, stop() }
if (values["base-url"]) {
  if (!values.token) fail("--token is required with --base-url");
  server = { baseUrl: values["base-url"].replace(/\/$/, ""), token: values.token, pid: values.pid ? Number(values.pid) : undefined, stop: async () => {} };
} else {
  server = await startServer();
}

async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function startServer() {
  const main = new URL("../apps/server/dist/main.js", import.meta.url);
  if (!fs.existsSync(main)) fail("apps/server/dist is missing: pnpm turbo run build --filter=@account-balance/server...");
  const port = await freePort();
  const token = randomBytes(30).toString("base64url");
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "soak-"));
  if (process.getuid?.() === 0) fs.chmodSync(tmp, 0o755); // the embedded postgres user must enter it
  const env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    PORT: String(port),
    HOST: "127.0.0.1",
    SERVICE_TOKENS: token,
    LOG_LEVEL: "warn",
    ...(process.env.DATABASE_URL ? { DATABASE_URL: process.env.DATABASE_URL } : { EMBEDDED_PG_DIR: path.join(tmp, "pg") }),
  };
  const child = spawn(process.execPath, [main.pathname], { env, stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (c) => (stderr = (stderr + c).slice(-4000)));
  const exited = new Promise((r) => child.on("close", r));
  const baseUrl = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 90_000;
  for (;;) {
    if (child.exitCode !== null) fail(`the server exited: ${stderr}`);
    const ok = await fetch(`${baseUrl}/readyz`).then((r) => r.status === 200, () => false);
    if (ok) break;
    if (Date.now() > deadline) fail("the server did not become ready");
    await sleep(200);
  }
  log(`server pid ${child.pid} on ${baseUrl} (${process.env.DATABASE_URL ? "DATABASE_URL" : "embedded PostgreSQL"})`);
  return {
    baseUrl,
    token,
    pid: child.pid,
    async stop() {
      child.kill("SIGTERM");
      await Promise.race([exited, sleep(15_000)]);
      if (child.exitCode === null) child.kill("SIGKILL");
      fs.rmSync(tmp, { recursive: true, force: true });
    },
  };
}

function rssMiB(pid) {
  if (!pid) return null;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Math.round(Number(m[1]) / 102.4) / 10 : null;
  } catch {
    return null;
  }
}

// ---- calls ------------------------------------------------------------------------------
const url = new URL(server.baseUrl);
const agent = new http.Agent({ keepAlive: true, maxSockets: 512 });

function post(pathname, body, headers = {}) {
  return new Promise((resolve) => {
    const data = JSON.stringify(body);
    const req = http.request(
      {
        host: url.hostname,
        port: url.port,
        path: pathname,
        method: "POST",
        agent,
        timeout: 30_000,
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(data), authorization: `Bearer ${server.token}`, ...headers },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c) => (text += c));
        res.on("end", () => resolve({ status: res.statusCode, text }));
        res.on("error", (e) => resolve({ status: 0, text: e.code ?? e.message }));
      },
    );
    req.on("timeout", () => req.destroy(Object.assign(new Error("timeout"), { code: "TIMEOUT" })));
    req.on("error", (e) => resolve({ status: 0, text: e.code ?? e.message }));
    req.end(data);
  });
}

const runId = randomBytes(4).toString("hex");
let seq = 0;
const balances = [];
for (let i = 0; i < balanceCount; i++) {
  const r = await post(BASE, { user_id: `soak_${runId}_${i % 16}`, balance_type: "credits", currency: "EUR", balance_cents: 1_000_000_000 });
  if (r.status !== 201) fail(`create balance answered ${r.status}: ${r.text.slice(0, 200)}`);
  balances.push(JSON.parse(r.text).data.id);
}

/** One credit (70%) or debit (30%) with its own idempotency key; resolves with the outcome. */
async function movement() {
  const id = balances[Math.floor(Math.random() * balances.length)];
  const kind = Math.random() < 0.7 ? "credit" : "debit";
  const key = `soak-${runId}-${(seq++).toString(36)}`;
  const r = await post(`${BASE}/${id}/${kind}`, { amount_cents: 1 + Math.floor(Math.random() * 1000) }, { "idempotency-key": key });
  if (r.status === 200) return "ok";
  if (r.status === 0) return `network:${r.text}`;
  let code = "";
  try {
    code = JSON.parse(r.text).code ?? "";
  } catch {}
  return `${r.status}${code ? `:${code}` : ""}`;
}

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  return Math.round(sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] * 10) / 10;
}

// ---- phase 1: maximum throughput, closed loop --------------------------------------------
log(`measuring maximum throughput: ${workers} workers, ${measureSeconds} s`);
let measured = 0;
let measureErrors = 0;
{
  const warmEnd = Date.now() + 2_000;
  const end = warmEnd + measureSeconds * 1000;
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (Date.now() < end) {
        const outcome = await movement();
        if (Date.now() < warmEnd) continue;
        if (outcome === "ok") measured++;
        else measureErrors++;
      }
    }),
  );
}
const maxRate = measured / measureSeconds;
const rate = maxRate * fraction;
log(`maximum ${maxRate.toFixed(1)} ops/s (${measureErrors} errors); holding ${rate.toFixed(1)} ops/s for ${minutes} min`);

// ---- phase 2: a fraction of it, open loop --------------------------------------------------
const MAX_IN_FLIGHT = 5_000;
const windows = [];
let current = newWindow(0);
function newWindow(index) {
  return { index, latencies: [], ok: 0, errors: {}, sent: 0, dropped: 0, rssMax: null };
}
function closeWindow(w, seconds) {
  const sorted = w.latencies.sort((a, b) => a - b);
  const errorCount = Object.values(w.errors).reduce((a, b) => a + b, 0) + w.dropped;
  const row = {
    atSeconds: Math.round(seconds),
    sent: w.sent,
    ok: w.ok,
    ratePerSecond: Math.round((w.ok / windowSeconds) * 10) / 10,
    errors: errorCount,
    errorKinds: w.dropped > 0 ? { ...w.errors, dropped: w.dropped } : w.errors,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    maxMs: sorted.length ? Math.round(sorted[sorted.length - 1]) : null,
    rssMiB: rssMiB(server.pid),
  };
  row.rssMaxMiB = row.rssMiB === null ? w.rssMax : Math.max(w.rssMax ?? 0, row.rssMiB);
  windows.push(row);
  log(
    `t=${String(row.atSeconds).padStart(4)}s ok=${row.ok} rate=${row.ratePerSecond}/s errors=${row.errors} p50=${row.p50Ms}ms p99=${row.p99Ms}ms max=${row.maxMs}ms rss=${row.rssMiB}MiB`,
  );
}

const allLatencies = [];
const rssStart = rssMiB(server.pid);
const start = performance.now();
const durationMs = minutes * 60_000;
let started = 0;
let inFlight = 0;
const pending = new Set();
const rssTimer = setInterval(() => {
  const r = rssMiB(server.pid);
  if (r !== null) current.rssMax = Math.max(current.rssMax ?? 0, r);
}, 1_000);

let windowEnd = windowSeconds * 1000;
while (performance.now() - start < durationMs) {
  const now = performance.now() - start;
  if (now >= windowEnd) {
    closeWindow(current, windowEnd / 1000);
    current = newWindow(current.index + 1);
    windowEnd += windowSeconds * 1000;
  }
  // Requests due by now, each timed from when it was due.
  const due = Math.floor((now / 1000) * rate);
  while (started < due) {
    const scheduledAt = start + (started / rate) * 1000;
    started++;
    current.sent++;
    if (inFlight >= MAX_IN_FLIGHT) {
      current.dropped++;
      continue;
    }
    inFlight++;
    const p = movement().then((outcome) => {
      inFlight--;
      // Counted in the window where it ends, so a window's row is final when it closes.
      const w = current;
      const latency = performance.now() - scheduledAt;
      if (outcome === "ok") {
        w.ok++;
        w.latencies.push(latency);
        allLatencies.push(latency);
      } else {
        w.errors[outcome] = (w.errors[outcome] ?? 0) + 1;
      }
    });
    pending.add(p);
    p.finally(() => pending.delete(p));
  }
  await sleep(5);
}
await Promise.all(pending);
closeWindow(current, (performance.now() - start) / 1000);
clearInterval(rssTimer);

allLatencies.sort((a, b) => a - b);
const totals = windows.reduce((t, w) => ({ ok: t.ok + w.ok, errors: t.errors + w.errors, sent: t.sent + w.sent }), { ok: 0, errors: 0, sent: 0 });
const summary = {
  minutes,
  maxThroughputPerSecond: Math.round(maxRate * 10) / 10,
  targetPerSecond: Math.round(rate * 10) / 10,
  achievedPerSecond: Math.round((totals.ok / (durationMs / 1000)) * 10) / 10,
  sent: totals.sent,
  ok: totals.ok,
  errors: totals.errors,
  p50Ms: percentile(allLatencies, 50),
  p99Ms: percentile(allLatencies, 99),
  maxMs: allLatencies.length ? Math.round(allLatencies[allLatencies.length - 1]) : null,
  rssStartMiB: rssStart,
  rssEndMiB: rssMiB(server.pid),
  rssMaxMiB: Math.max(...windows.map((w) => w.rssMaxMiB ?? 0)),
  windows,
};
process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
if (values.json) fs.writeFileSync(values.json, `${JSON.stringify(summary, null, 2)}\n`);
agent.destroy();
await server.stop();
process.exit(0);
