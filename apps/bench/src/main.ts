#!/usr/bin/env node
import { fork } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { CLIENT_PROTOCOL, parseOptions, SCENARIO_TITLES, UsageError, type Client, type Options, type Scenario } from "./options.js";
import { seed } from "./seed.js";
import { startServer, rpcCounts, type ServerProcess } from "./server.js";
import { backendCpuDelta, machineCpu, postgresBackends, watchProcess } from "./proc.js";
import { isInstalled, runExternal, unsupported, type ExternalClient } from "./external.js";
import type { NodeClient, RunResult, RunSpec } from "./worker.js";
import type { Target } from "./ops.js";
import { checkTargets, formatMarkdown, formatTable, formatTargets, type Row } from "./report.js";

/**
 * `pnpm bench`: seeds (or reuses) a benchmark database, starts the built server as a child
 * process, and drives each scenario at each concurrency with each load generator, each in a
 * process of its own, next to a baseline that does the same SQL straight through `pg`.
 * Prints a table and writes bench/results/<timestamp>.json.
 */

export const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const SERVER_MAIN = path.join(REPO_ROOT, "apps/server/dist/main.js");
// Always the built file, also when this module runs from src (the smoke test under vitest).
const LOAD_PROCESS = path.join(REPO_ROOT, "apps/bench/dist/load-process.js");
const REST_BASE = "/bridge-payment/account-balance";

export interface BenchReport {
  startedAt: string;
  finishedAt: string;
  options: Omit<Options, "databaseUrl"> & { database: string };
  machine: { cpus: number; cpuModel: string; memoryMb: number; node: string; postgres: string; load: number[] };
  seeded: Array<{ set: string; rows: number; seconds: number }>;
  notes: string[];
  rows: Row[];
  targets: ReturnType<typeof checkTargets>;
}

function log(msg: string): void {
  process.stderr.write(`[bench] ${msg}\n`);
}

function runNode(spec: RunSpec): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = fork(LOAD_PROCESS, [], { execArgv: [], stdio: ["ignore", "inherit", "inherit", "ipc"] });
    let settled = false;
    child.once("message", (msg: { result?: RunResult; error?: string }) => {
      settled = true;
      if (msg.result) resolve(msg.result);
      else reject(new Error(msg.error ?? "load process failed"));
    });
    child.once("exit", (code) => {
      if (!settled) reject(new Error(`load process exited ${code} without a result`));
    });
    child.send(spec);
  });
}

async function postgresVersion(databaseUrl: string): Promise<string> {
  const c = new pg.Client({ connectionString: databaseUrl });
  await c.connect();
  try {
    return (await c.query<{ v: string }>("select current_setting('server_version') as v")).rows[0]?.v ?? "?";
  } finally {
    await c.end();
  }
}

function redact(url: string): string {
  const u = new URL(url);
  if (u.password) u.password = "***";
  return u.toString();
}

export async function runBench(opts: Options): Promise<{ report: BenchReport; file: string }> {
  const startedAt = new Date();
  const notes: string[] = [];
  log(`database ${redact(opts.databaseUrl)}`);
  const seeded = await seed(opts.databaseUrl, opts.sizes, log);
  for (const b of seeded.built) log(`seeded ${b.set}: ${b.rows} rows in ${b.seconds.toFixed(1)} s`);

  const serviceToken = randomBytes(30).toString("base64url");
  if (opts.cpuProfDir) fs.mkdirSync(opts.cpuProfDir, { recursive: true });
  const server: ServerProcess = await startServer({
    mainJs: SERVER_MAIN,
    cwd: REPO_ROOT,
    databaseUrl: opts.databaseUrl,
    serviceToken,
    poolMax: opts.poolMax,
    cpuProfDir: opts.cpuProfDir,
  });
  log(`server pid ${server.pid} on ${server.baseUrl}`);
  // Interrupted: stop the server child too, rather than leave it running.
  const interrupted = (signal: NodeJS.Signals) => {
    log(`${signal}: stopping the server`);
    void server.stop().finally(() => process.exit(130));
  };
  process.once("SIGINT", interrupted);
  process.once("SIGTERM", interrupted);
  const target: Target = {
    baseUrl: server.baseUrl,
    restBase: REST_BASE,
    serviceToken,
    session: seeded.session,
    databaseUrl: opts.databaseUrl,
    ids: seeded.ids,
  };

  const installed = { h2load: isInstalled("h2load"), wrk: isInstalled("wrk") };
  for (const [tool, ok] of Object.entries(installed)) {
    if (!ok && opts.clients.some((c) => c.startsWith(tool))) {
      notes.push(`${tool} is not installed (Debian: apt-get install ${tool === "h2load" ? "nghttp2-client" : "wrk"}): its rows are skipped`);
    }
  }
  const database = decodeURIComponent(new URL(opts.databaseUrl).pathname.slice(1));
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), "bench-"));
  const rows: Row[] = [];
  try {
    for (const scenario of opts.scenarios) {
      for (const concurrency of opts.concurrency) {
        let baselineOps: number | null = null;
        if (opts.baseline) {
          const row = await measure(server, database, scenario, concurrency, "baseline", () =>
            runNode(spec("baseline", scenario, concurrency, opts, target)),
          );
          baselineOps = row.opsPerSec;
          rows.push(row);
          print(row);
        }
        for (const client of opts.clients) {
          const skip = skipReason(client, scenario, installed);
          if (skip) {
            rows.push(skippedRow(scenario, concurrency, client, skip));
            continue;
          }
          const row = await measure(server, database, scenario, concurrency, client, () =>
            isExternal(client)
              ? runExternal({ client, scenario, concurrency, durationSec: opts.durationSec, warmupSec: opts.warmupSec, target, workDir })
              : runNode(spec(client as NodeClient, scenario, concurrency, opts, target)),
          );
          row.ratio = baselineOps ? row.opsPerSec / baselineOps : null;
          rows.push(row);
          print(row);
        }
      }
    }
  } finally {
    process.removeListener("SIGINT", interrupted);
    process.removeListener("SIGTERM", interrupted);
    await server.stop();
    fs.rmSync(workDir, { recursive: true, force: true });
  }

  const report: BenchReport = {
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    options: { ...opts, databaseUrl: undefined, database: redact(opts.databaseUrl) } as BenchReport["options"],
    machine: {
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model ?? "?",
      memoryMb: Math.round(os.totalmem() / 2 ** 20),
      node: process.version,
      postgres: await postgresVersion(opts.databaseUrl),
      load: os.loadavg(),
    },
    seeded: seeded.built,
    notes,
    rows,
    targets: checkTargets(rows),
  };
  fs.mkdirSync(opts.resultsDir, { recursive: true });
  const file = path.join(opts.resultsDir, `${startedAt.toISOString().replace(/[:.]/g, "-")}.json`);
  fs.writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  return { report, file };
}

function spec(client: NodeClient, scenario: Scenario, concurrency: number, opts: Options, target: Target): RunSpec {
  return {
    client,
    scenario,
    concurrency,
    durationMs: opts.durationSec * 1000,
    warmupMs: opts.warmupSec * 1000,
    target,
    poolMax: opts.poolMax,
  };
}

function isExternal(client: Client): client is ExternalClient {
  return client.startsWith("h2load") || client.startsWith("wrk");
}

function skipReason(client: Client, scenario: Scenario, installed: { h2load: boolean; wrk: boolean }): string | undefined {
  if (!isExternal(client)) return undefined;
  if (client.startsWith("h2load") && !installed.h2load) return "h2load not installed";
  if (client.startsWith("wrk") && !installed.wrk) return "wrk not installed";
  return unsupported(client, scenario);
}

function skippedRow(scenario: Scenario, concurrency: number, client: Client, reason: string): Row {
  return {
    scenario,
    concurrency,
    client,
    protocol: CLIENT_PROTOCOL[client],
    skipped: reason,
    ok: 0,
    errors: 0,
    errorSamples: [],
    opsPerSec: 0,
    ratio: null,
    latencyMs: { count: 0, p50: 0, p99: 0, max: 0, mean: 0 },
    clientCpuUsPerOp: 0,
    server: null,
    postgresCpuPercent: 0,
    machineBusyPercent: 0,
  };
}

/** One run with the server's and PostgreSQL's CPU and the server's memory watched around it. */
async function measure(
  server: ServerProcess,
  database: string,
  scenario: Scenario,
  concurrency: number,
  client: Client | "baseline",
  run: () => Promise<RunResult>,
): Promise<Row> {
  const before = await rpcCounts(server.baseUrl);
  const watch = watchProcess(server.pid);
  const pg0 = postgresBackends(database);
  const m0 = machineCpu();
  const t0 = Date.now();
  const result = await run();
  const wallSec = (Date.now() - t0) / 1000;
  const srv = watch.stop();
  const pgSec = backendCpuDelta(pg0, postgresBackends(database));
  const m1 = machineCpu();
  const after = await rpcCounts(server.baseUrl);
  const canceled = (after.byCode.get("Canceled") ?? 0) - (before.byCode.get("Canceled") ?? 0);
  const opsPerSec = result.elapsedSec > 0 ? result.ok / result.elapsedSec : 0;
  // Server and PostgreSQL CPU cover the whole run, warm-up included: per op, divide by
  // every call they served in that time (the /metrics count).
  const served = after.ok + after.failed - (before.ok + before.failed);
  return {
    scenario,
    concurrency,
    client,
    protocol: client === "baseline" ? "sql" : CLIENT_PROTOCOL[client],
    ok: result.ok,
    errors: result.errors,
    errorSamples: [...result.errorSamples, ...failedOnServer(before.byCode, after.byCode)],
    opsPerSec,
    ratio: null,
    latencyMs: result.latency,
    clientCpuUsPerOp: result.ok > 0 ? (result.clientCpuSec / result.ok) * 1e6 : 0,
    server: {
      peakRssMb: srv.peakRssBytes / 2 ** 20,
      cpuPercent: (srv.cpuSeconds / wallSec) * 100,
      cpuUsPerOp: served > 0 ? (srv.cpuSeconds / served) * 1e6 : 0,
      failedRpcs: after.failed - before.failed - canceled,
      canceledRpcs: canceled,
    },
    postgresCpuPercent: (pgSec / wallSec) * 100,
    machineBusyPercent: m1.total > m0.total ? ((m1.busy - m0.busy) / (m1.total - m0.total)) * 100 : 0,
  };
}

/** The server's failed RPCs during one run, by code: "server: 6 CANCELED". */
function failedOnServer(before: Map<string, number>, after: Map<string, number>): string[] {
  const parts: string[] = [];
  for (const [code, n] of after) {
    const d = n - (before.get(code) ?? 0);
    if (d > 0) parts.push(`${d} ${code}`);
  }
  return parts.length ? [`server: ${parts.join(", ")}`] : [];
}

function print(row: Row): void {
  const l = row.latencyMs;
  const extra = row.errorSamples.length ? ` errors: ${row.errorSamples.join(" | ")}` : "";
  log(
    `${row.scenario} c=${row.concurrency} ${row.client}: ${row.opsPerSec.toFixed(0)} ops/s` +
      `${row.ratio !== null ? ` (${row.ratio.toFixed(2)}x)` : ""}, p50 ${l.p50.toFixed(2)} p99 ${l.p99.toFixed(2)} max ${l.max.toFixed(1)} ms, ` +
      `${row.errors} err, client ${row.clientCpuUsPerOp.toFixed(0)} µs/op${extra}`,
  );
}

async function main(): Promise<void> {
  let opts: Options;
  try {
    opts = parseOptions(process.argv.slice(2), process.env, REPO_ROOT);
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(err instanceof UsageError && process.argv.includes("--help") ? 0 : 2);
  }
  const { report, file } = await runBench(opts);
  const out = process.stdout;
  out.write(`\nScenarios:\n${opts.scenarios.map((s) => `  ${s.padEnd(8)} ${SCENARIO_TITLES[s]}`).join("\n")}\n\n`);
  out.write(`${formatTable(report.rows)}\n\n`);
  out.write(`Targets (ratios to the baseline of the same run):\n${formatTargets(report.targets)}\n`);
  for (const n of report.notes) out.write(`note: ${n}\n`);
  out.write(`\n${file}\n`);
  if (process.env.BENCH_MARKDOWN) fs.writeFileSync(process.env.BENCH_MARKDOWN, `${formatMarkdown(report.rows)}\n`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  main().catch((err: unknown) => {
    process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  });
}
