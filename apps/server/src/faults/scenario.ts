import { randomBytes } from "node:crypto";
import { childEnv, CLI_JS, runNode } from "../testing/process.js";
import { auditLedger, type Audit } from "./audit.js";
import { createBalance, readyzStatus } from "./client.js";
import { startOwnedCluster, type OwnedCluster } from "./cluster.js";
import { createServerProcess, type ServerProcess } from "./servers.js";
import { record, settle, startWorkload, type AttemptStats, type Op, type WorkloadBalance } from "./workload.js";

/**
 * The fault run: a PostgreSQL the run owns, two server processes sharing it, a client
 * workload with idempotency keys and retries, and faults injected while it runs. Then every
 * operation is settled, the ledger is audited against what clients were told, and the
 * integrity check runs. The bounded CI test and scripts/faults-long.mjs both run this.
 */

export interface FaultRunOptions {
  /** Fault cycles (each: kill -9 + restart of a server, backend terminations, a PostgreSQL restart). Default 1. */
  cycles?: number;
  /** Or: keep cycling until this much time has passed (overrides cycles). */
  minutes?: number;
  workers?: number;
  balances?: number;
  /** Seconds PostgreSQL stays down in each restart. Default 2.5. */
  pgOutageSeconds?: number;
  /** Progress lines. */
  log?: (line: string) => void;
}

export interface ReadyzDuringOutage {
  server: string;
  /** Statuses /readyz answered while PostgreSQL was down (0 = no answer). */
  statuses: number[];
  /** ms from PostgreSQL being back to /readyz answering 200. */
  recoveredAfterMs: number;
}

export interface FaultRunReport {
  durationSeconds: number;
  operations: {
    total: number;
    acked: number;
    refused: number;
    /** No definite answer by the op's deadline; settled afterwards by a replay of the same key. */
    unknownAtDeadline: number;
    /** Still without a definite answer after the replay (must be 0). */
    unresolved: number;
    hedged: number;
    refusedThenAcked: number;
    refusals: Record<string, number>;
  };
  attempts: number;
  retries: Record<string, number>;
  byProtocol: AttemptStats["byProtocol"];
  faults: {
    serverKill9: number;
    serverRestarts: number;
    serverKilledForGood: number;
    backendTerminateCalls: number;
    backendsTerminated: number;
    postgresRestarts: number;
  };
  readyz: ReadyzDuringOutage[];
  /** After each PostgreSQL start: ms until the next acknowledged operation. */
  firstAckAfterPgStartMs: number[];
  replay: { checked: number; differing: string[]; rowsWritten: number };
  audit: Audit;
  verify: { exitCode: number | null; output: string };
  crashes: string[];
  /** Distinct error-level lines the servers logged, and lines that were not JSON (e.g. from a driver). */
  serverLogs: { errors: Record<string, number>; unstructured: Record<string, number>; leaks: string[] };
}

/** Every broken promise of a run, in words; empty when the run kept them all. */
export function violations(r: FaultRunReport): string[] {
  const out: string[] = [];
  const list = (what: string, xs: readonly string[]) => {
    if (xs.length > 0) out.push(`${xs.length} ${what}: ${xs.slice(0, 5).join("; ")}`);
  };
  if (r.operations.unresolved > 0) out.push(`${r.operations.unresolved} operations without a definite answer`);
  list("acknowledged operations lost", r.audit.lost);
  list("operations duplicated", r.audit.duplicated);
  list("transactions nobody was told about", r.audit.phantom);
  list("transactions unlike their request", r.audit.mismatched);
  list("balances off their acknowledged operations", r.audit.balanceDrift);
  list("idempotency key rows wrong", r.audit.keyRows);
  list("keys answered with two transactions", r.audit.conflicts);
  if (r.audit.overdrafts > 0) out.push(`${r.audit.overdrafts} transactions below zero`);
  list("replays that differ", r.replay.differing);
  if (r.replay.rowsWritten !== 0) out.push(`replays wrote ${r.replay.rowsWritten} rows`);
  if (r.verify.exitCode !== 0) out.push(`verify exited ${r.verify.exitCode}: ${r.verify.output}`);
  list("server crashes", r.crashes);
  list("server log lines with SQL or stack frames", r.serverLogs.leaks);
  for (const x of r.readyz) {
    if (x.statuses.length === 0 || x.statuses.some((s) => s !== 503)) out.push(`${x.server} /readyz during the outage: ${x.statuses.join(",")}`);
    if (x.recoveredAfterMs < 0) out.push(`${x.server} /readyz did not recover`);
  }
  for (const ms of r.firstAckAfterPgStartMs) if (!(ms < 15_000)) out.push(`traffic resumed ${ms} ms after PostgreSQL came back`);
  return out;
}

function serverLogs(servers: readonly ServerProcess[]): FaultRunReport["serverLogs"] {
  const errors: Record<string, number> = {};
  const unstructured: Record<string, number> = {};
  const leaks: string[] = [];
  for (const line of servers.flatMap((s) => s.logs().split("\n"))) {
    if (!line.trim()) continue;
    if (LEAK.test(line) && leaks.length < 20) leaks.push(line.slice(0, 200));
    let entry: { level?: string; msg?: string; error?: string; method?: string } | undefined;
    try {
      entry = JSON.parse(line) as typeof entry;
    } catch {
      const key = line.slice(0, 120);
      unstructured[key] = (unstructured[key] ?? 0) + 1;
      continue;
    }
    if (entry?.level !== "error") continue;
    const key = [entry.msg, entry.method, entry.error].filter(Boolean).join(" | ");
    errors[key] = (errors[key] ?? 0) + 1;
  }
  return { errors, unstructured, leaks };
}

// SQL or a stack frame in what a server prints: internals that must stay inside (spec rule).
const LEAK = /\b(select\s.+\sfrom|insert\s+into|update\s+\w+\s+set|delete\s+from|on\s+conflict)\b|^\s+at\s.+:\d+:\d+\)?$/i;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function runFaults(options: FaultRunOptions = {}): Promise<FaultRunReport> {
  const log = options.log ?? (() => undefined);
  const started = Date.now();
  const token = randomBytes(30).toString("base64url");
  const cluster = await startOwnedCluster();
  const servers: ServerProcess[] = [];
  try {
    servers.push(await createServerProcess("A", { databaseUrl: cluster.url, serviceToken: token }));
    servers.push(await createServerProcess("B", { databaseUrl: cluster.url, serviceToken: token }));
    // Both at once: the migration lock must let them start side by side.
    await Promise.all(servers.map((s) => s.start()));
    log(`cluster on ${cluster.port}, servers ${servers.map((s) => s.port).join(", ")}`);
    return await run(cluster, servers, token, options, log, started);
  } finally {
    await Promise.all(servers.map((s) => s.stop().catch(() => undefined)));
    await cluster.destroy();
  }
}

async function run(
  cluster: OwnedCluster,
  servers: ServerProcess[],
  token: string,
  options: FaultRunOptions,
  log: (line: string) => void,
  started: number,
): Promise<FaultRunReport> {
  const [a, b] = servers as [ServerProcess, ServerProcess];
  const balanceCount = options.balances ?? 12;
  const balances: WorkloadBalance[] = [];
  for (let i = 0; i < balanceCount; i++) {
    // A quarter start nearly empty and see more and larger debits: refusals happen there.
    const tight = i % 4 === 3;
    const openingCents = tight ? 300 : 1_000_000;
    balances.push({ id: await createBalance(a.baseUrl, token, `faults_user_${i % 5}`, openingCents), openingCents, tight });
  }

  const targets = servers;
  const workload = startWorkload({
    targets,
    token,
    balances,
    workers: options.workers ?? 8,
    attemptTimeoutMs: 5_000,
    opDeadlineMs: 20_000,
    hedgeRatio: 0.1,
  });

  const faults = { serverKill9: 0, serverRestarts: 0, serverKilledForGood: 0, backendTerminateCalls: 0, backendsTerminated: 0, postgresRestarts: 0 };
  const readyz: ReadyzDuringOutage[] = [];
  const pgStarts: number[] = [];

  const endAt = options.minutes !== undefined ? started + options.minutes * 60_000 : undefined;
  const cycles = options.cycles ?? 1;
  for (let cycle = 0; endAt !== undefined ? Date.now() < endAt - 25_000 || cycle === 0 : cycle < cycles; cycle++) {
    // 1. kill -9 one server mid-traffic, then start it again on its port.
    await sleep(2_500);
    const victim = servers[cycle % 2]!;
    await victim.kill9();
    faults.serverKill9 += 1;
    log(`cycle ${cycle}: kill -9 ${victim.name}`);
    await sleep(1_000);
    await victim.start();
    faults.serverRestarts += 1;

    // 2. Cut every server connection at the database.
    for (let i = 0; i < 3; i++) {
      await sleep(1_500);
      faults.backendsTerminated += await cluster.terminateBackends();
      faults.backendTerminateCalls += 1;
    }
    log(`cycle ${cycle}: pg_terminate_backend x3 (${faults.backendsTerminated} backends so far)`);

    // 3. Restart PostgreSQL; /readyz must say so while it is down, and recover by itself.
    await sleep(2_500);
    // Ready before the outage (the pool may still be replacing the connections cut above).
    for (const s of servers) {
      let status = 0;
      for (const until = Date.now() + 15_000; status !== 200 && Date.now() < until; await sleep(100)) status = await readyzStatus(s.baseUrl);
      if (status !== 200) throw new Error(`${s.name} /readyz answered ${status} before the outage`);
    }
    await cluster.stop();
    log(`cycle ${cycle}: PostgreSQL stopped`);
    const outageEnd = Date.now() + (options.pgOutageSeconds ?? 2.5) * 1000;
    const seen = new Map<string, number[]>(servers.map((s) => [s.name, []]));
    while (Date.now() < outageEnd) {
      await Promise.all(servers.map(async (s) => seen.get(s.name)!.push(await readyzStatus(s.baseUrl))));
      await sleep(200);
    }
    await cluster.start();
    const pgStart = Date.now();
    pgStarts.push(pgStart);
    faults.postgresRestarts += 1;
    log(`cycle ${cycle}: PostgreSQL started`);
    for (const s of servers) {
      let recovered = -1;
      while (Date.now() - pgStart < 30_000) {
        if ((await readyzStatus(s.baseUrl)) === 200) {
          recovered = Date.now() - pgStart;
          break;
        }
        await sleep(100);
      }
      readyz.push({ server: s.name, statuses: seen.get(s.name)!, recoveredAfterMs: recovered });
    }
    await sleep(2_000);
  }

  // 4. Two servers share the database; one of them dies for good mid-run.
  await b.kill9();
  faults.serverKilledForGood += 1;
  log("kill -9 B for good");
  await sleep(4_000);
  await workload.stop();
  log(`workload stopped: ${workload.ops.length} operations`);

  // Every operation without a definite answer is settled by sending it again, same key.
  const unknown = workload.ops.filter((o) => o.outcome === "unknown");
  const alive = servers.filter((s) => s.alive);
  for (const op of unknown) {
    record(op, await settle(op, { targets: alive, token, attemptTimeoutMs: 5_000, opDeadlineMs: 30_000 }, workload.stats, 0, "rest"));
  }

  const replay = await replayAcked(cluster, workload.ops, alive, token);
  const audit = await auditLedger(cluster.sql, workload.ops, balances);
  const verified = await runNode(CLI_JS, ["verify"], childEnv({ DATABASE_URL: cluster.url, MIGRATE_ON_START: "false" }), 60_000);

  const ackTimes = [...workload.stats.ackTimes].sort((x, y) => x - y);
  const refusals: Record<string, number> = {};
  for (const o of workload.ops) if (o.outcome === "refused") refusals[o.refusal!] = (refusals[o.refusal!] ?? 0) + 1;
  return {
    durationSeconds: Math.round((Date.now() - started) / 100) / 10,
    operations: {
      total: workload.ops.length,
      acked: audit.acked,
      refused: audit.refused,
      unknownAtDeadline: unknown.length,
      unresolved: workload.ops.filter((o) => o.outcome === "unknown").length,
      hedged: workload.ops.filter((o) => o.hedged).length,
      refusedThenAcked: workload.ops.filter((o) => o.refusedThenAcked).length,
      refusals,
    },
    attempts: workload.stats.attempts,
    retries: Object.fromEntries([...workload.stats.retries].sort((x, y) => y[1] - x[1])),
    byProtocol: workload.stats.byProtocol,
    faults,
    readyz,
    firstAckAfterPgStartMs: pgStarts.map((t) => (ackTimes.find((x) => x >= t) ?? Number.NaN) - t),
    replay,
    audit,
    verify: { exitCode: verified.code, output: (verified.stdout + verified.stderr).trim() },
    crashes: servers.flatMap((s) => s.crashes),
    serverLogs: serverLogs(servers),
  };
}

/**
 * Sends acknowledged operations again with their keys (a sample, both protocols): each must
 * answer with its original transaction and write nothing.
 */
async function replayAcked(cluster: OwnedCluster, ops: readonly Op[], targets: readonly ServerProcess[], token: string) {
  const acked = ops.filter((o) => o.outcome === "acked");
  const sample = acked.filter((_, i) => i % Math.max(1, Math.floor(acked.length / 200)) === 0).slice(0, 200);
  const count = async () => Number((await cluster.sql<{ n: string }>("select count(*) as n from account_transactions"))[0]!.n);
  const before = await count();
  const differing: string[] = [];
  const stats: AttemptStats = { attempts: 0, retries: new Map(), byProtocol: { rest: 0, connect: 0 }, ackTimes: [] };
  await Promise.all(
    [0, 1, 2, 3].map(async (lane) => {
      for (let i = lane; i < sample.length; i += 4) {
        const op = sample[i]!;
        const answer = await settle({ ...op }, { targets, token, attemptTimeoutMs: 5_000, opDeadlineMs: 20_000 }, stats, i, i % 2 ? "rest" : "connect");
        if (answer.kind !== "ok" || answer.txnId !== op.txnId) differing.push(`${op.key}: ${JSON.stringify(answer)} (acknowledged ${op.txnId})`);
      }
    }),
  );
  return { checked: sample.length, differing, rowsWritten: (await count()) - before };
}
