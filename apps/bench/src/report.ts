import type { Client, Protocol, Scenario } from "./options.js";
import type { LatencySummary } from "./stats.js";

export interface Row {
  scenario: Scenario;
  concurrency: number;
  /** "baseline" is the direct-pg run. */
  client: Client | "baseline";
  protocol: Protocol | "sql";
  /** Set when the row did not run, with the reason. */
  skipped?: string;
  ok: number;
  errors: number;
  errorSamples: string[];
  opsPerSec: number;
  /** opsPerSec / the baseline's opsPerSec for the same scenario and concurrency. */
  ratio: number | null;
  latencyMs: LatencySummary;
  /** CPU of the load generator per successful operation, microseconds. */
  clientCpuUsPerOp: number;
  server: {
    peakRssMb: number;
    /** CPU of the server process during the run, % of one core. */
    cpuPercent: number;
    cpuUsPerOp: number;
    /**
     * RPCs that did not end OK, from /metrics (also catches gRPC errors h2load cannot see),
     * cancellations aside.
     */
    failedRpcs: number;
    /**
     * RPCs whose caller went away first: wrk and h2load close their connections with calls
     * in flight when their time is up, so up to one per connection at the end is expected.
     */
    canceledRpcs: number;
  } | null;
  /** CPU of the PostgreSQL backends of the bench database during the run, % of one core. */
  postgresCpuPercent: number;
  /** The whole machine's busy CPU during the run, % of all cores. */
  machineBusyPercent: number;
}

export interface TargetCheck {
  name: string;
  goal: string;
  value: string;
  met: boolean | null;
  from: string;
}

const f = (n: number, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : "-");

export function formatTable(rows: Row[]): string {
  const header = ["scenario", "conc", "client", "ops/s", "x base", "p50 ms", "p99 ms", "max ms", "err", "srv RSS MB", "srv CPU%", "pg CPU%", "cli µs/op"];
  const lines: string[][] = [header];
  for (const r of rows) {
    if (r.skipped) {
      lines.push([r.scenario, String(r.concurrency), r.client, `skipped: ${r.skipped}`]);
      continue;
    }
    lines.push([
      r.scenario,
      String(r.concurrency),
      r.client,
      f(r.opsPerSec, 0),
      r.ratio === null ? "-" : `${f(r.ratio, 2)}`,
      f(r.latencyMs.p50, 2),
      f(r.latencyMs.p99, 2),
      f(r.latencyMs.max, 1),
      String(r.errors + (r.server && r.client !== "baseline" ? Math.max(0, r.server.failedRpcs - r.errors) : 0)),
      r.server && r.client !== "baseline" ? f(r.server.peakRssMb, 0) : "-",
      r.server && r.client !== "baseline" ? f(r.server.cpuPercent, 0) : "-",
      f(r.postgresCpuPercent, 0),
      f(r.clientCpuUsPerOp, 0),
    ]);
  }
  const widths = header.map((_, i) => Math.max(...lines.filter((l) => l.length > 4).map((l) => (l[i] ?? "").length)));
  return lines
    .map((l) => (l.length <= 4 ? l.join("  ") : l.map((c, i) => (i < 3 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ")))
    .join("\n");
}

/** Markdown of the same table, for docs/benchmarks.md. */
export function formatMarkdown(rows: Row[]): string {
  const out = [
    "| scenario | conc | client | ops/s | × baseline | p50 ms | p99 ms | max ms | errors | server RSS MB | server CPU % | pg CPU % | client µs/op |",
    "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  for (const r of rows) {
    if (r.skipped) continue;
    const srv = r.server && r.client !== "baseline";
    out.push(
      `| ${r.scenario} | ${r.concurrency} | ${r.client} | ${f(r.opsPerSec, 0)} | ${r.ratio === null ? "-" : f(r.ratio, 2)} | ${f(r.latencyMs.p50, 2)} | ${f(r.latencyMs.p99, 2)} | ${f(r.latencyMs.max, 1)} | ${r.errors} | ${srv ? f(r.server!.peakRssMb, 0) : "-"} | ${srv ? f(r.server!.cpuPercent, 0) : "-"} | ${f(r.postgresCpuPercent, 0)} | ${f(r.clientCpuUsPerOp, 0)} |`,
    );
  }
  return out.join("\n");
}

function ran(rows: Row[], scenario: Scenario, concurrency: number, protocols?: readonly Protocol[]): Row[] {
  return rows.filter(
    (r) =>
      !r.skipped &&
      r.client !== "baseline" &&
      r.scenario === scenario &&
      r.concurrency === concurrency &&
      r.ok > 0 &&
      (!protocols || protocols.includes(r.protocol as Protocol)),
  );
}

/** The client that spent the least CPU per operation: the one that left the most CPU to the server. */
function lightest(rows: Row[]): Row | undefined {
  return [...rows].sort((a, b) => a.clientCpuUsPerOp - b.clientCpuUsPerOp)[0];
}

/** The targets, read from the lightest client of each scenario. */
export function checkTargets(rows: Row[]): TargetCheck[] {
  const checks: TargetCheck[] = [];
  const conc = (want: number) => {
    const all = [...new Set(rows.map((r) => r.concurrency))].sort((a, b) => Math.abs(a - want) - Math.abs(b - want));
    return all[0] ?? want;
  };
  const c32 = conc(32);

  const debit = lightest(ran(rows, "debit", c32, ["grpc"]));
  checks.push(
    debit
      ? {
          name: "debit, 10,000 balances, gRPC",
          goal: `>= 1.0x baseline and p99 <= 20 ms at ${c32} clients`,
          value: `${f(debit.ratio ?? NaN, 2)}x, p99 ${f(debit.latencyMs.p99, 1)} ms`,
          met: debit.ratio !== null && debit.ratio >= 1 && debit.latencyMs.p99 <= 20,
          from: debit.client,
        }
      : { name: "debit, 10,000 balances, gRPC", goal: ">= 1.0x baseline, p99 <= 20 ms", value: "not run", met: null, from: "-" },
  );

  const hot = lightest(ran(rows, "hot", c32));
  checks.push(
    hot
      ? { name: "hot balance", goal: `>= 3x baseline at ${c32} clients`, value: `${f(hot.ratio ?? NaN, 2)}x`, met: hot.ratio !== null && hot.ratio >= 3, from: hot.client }
      : { name: "hot balance", goal: ">= 3x baseline", value: "not run", met: null, from: "-" },
  );

  // The same load generator on both sides, so the comparison is the server's, not the client's.
  const pairs: Array<[Client, Client]> = [["wrk-rest", "wrk-connect"], ["rest", "connect"]];
  let restCheck: TargetCheck | undefined;
  for (const [restClient, connectClient] of pairs) {
    const rest = ran(rows, "debit", c32).find((r) => r.client === restClient);
    const connect = ran(rows, "debit", c32).find((r) => r.client === connectClient);
    if (!rest || !connect) continue;
    const ratio = rest.opsPerSec / connect.opsPerSec;
    restCheck = { name: "REST gateway vs Connect (debit)", goal: ">= 0.7x Connect", value: `${f(ratio, 2)}x`, met: ratio >= 0.7, from: `${restClient} / ${connectClient}` };
    break;
  }
  checks.push(restCheck ?? { name: "REST gateway vs Connect (debit)", goal: ">= 0.7x Connect", value: "not run", met: null, from: "-" });

  const served = rows.filter((r) => !r.skipped && r.client !== "baseline" && r.server);
  const peak = Math.max(0, ...served.map((r) => r.server!.peakRssMb));
  checks.push({ name: "server RSS under load", goal: "<= 150 MB", value: `${f(peak, 0)} MB peak`, met: served.length ? peak <= 150 : null, from: "all runs" });

  const low = conc(1);
  const big = lightest(ran(rows, "list-1m", low));
  const small = big ? ran(rows, "list-1k", low).find((r) => r.client === big.client) : undefined;
  if (big && small) {
    const ratio = big.latencyMs.p50 / small.latencyMs.p50;
    checks.push({
      name: "reads flat as history grows",
      goal: "newest 50 of 1,000,000 within 2x of 1,000 (p50)",
      value: `${f(ratio, 2)}x (${f(big.latencyMs.p50, 2)} vs ${f(small.latencyMs.p50, 2)} ms at ${low} client(s))`,
      met: ratio <= 2,
      from: big.client,
    });
  } else {
    checks.push({ name: "reads flat as history grows", goal: "within 2x", value: "not run", met: null, from: "-" });
  }
  return checks;
}

export function formatTargets(checks: TargetCheck[]): string {
  return checks
    .map((c) => `${c.met === null ? "  ?" : c.met ? " ok" : "MISS"}  ${c.name}: ${c.value} (goal ${c.goal}; ${c.from})`)
    .join("\n");
}
