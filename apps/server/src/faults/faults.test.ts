import { beforeAll, describe, expect, it } from "vitest";
import { assertBuilt } from "../testing/process.js";
import { runFaults, violations, type FaultRunReport } from "./scenario.js";

// The bounded fault run (one cycle of every fault kind, well under 2 minutes). The longer
// run is scripts/faults-long.mjs; both use scenario.ts.

beforeAll(() => assertBuilt());

describe("faults, with nothing lost", () => {
  let report: FaultRunReport;

  it("runs a retrying client workload through kill -9, pg_terminate_backend, a PostgreSQL restart and a lost server", { timeout: 110_000 }, async () => {
    report = await runFaults({ cycles: 1, log: (line) => process.stderr.write(`[faults] ${line}\n`) });
    process.stderr.write(`[faults] report ${JSON.stringify(summary(report))}\n`);

    // A real workload ran through every fault kind.
    // (A loaded CI machine does a few hundred; an idle one several thousand.)
    expect(report.operations.acked).toBeGreaterThan(100);
    expect(report.faults).toMatchObject({ serverKill9: 1, serverRestarts: 1, serverKilledForGood: 1, postgresRestarts: 1 });
    expect(report.faults.backendsTerminated).toBeGreaterThan(0);
    expect(Object.keys(report.retries).length, "the faults were felt by clients").toBeGreaterThan(0);
    expect(report.crashes, "no server died by itself").toEqual([]);
  });

  it("every operation ends with a definite answer", () => {
    expect(report.operations.unresolved).toBe(0);
    expect(report.audit.conflicts).toEqual([]);
  });

  it("every acknowledged operation is in the ledger exactly once, and nothing else is", () => {
    expect(report.audit.lost).toEqual([]);
    expect(report.audit.duplicated).toEqual([]);
    expect(report.audit.phantom).toEqual([]);
    expect(report.audit.mismatched).toEqual([]);
    expect(report.audit.keyRows).toEqual([]);
  });

  it("each balance equals its opening plus its acknowledged operations, never below zero", () => {
    expect(report.audit.balanceDrift).toEqual([]);
    expect(report.audit.overdrafts).toBe(0);
  });

  it("a replayed key returns the original transaction and writes nothing", () => {
    expect(report.replay.checked).toBeGreaterThan(50);
    expect(report.replay.differing).toEqual([]);
    expect(report.replay.rowsWritten).toBe(0);
  });

  it("the integrity check passes", () => {
    expect(report.verify.output).toMatch(/0 with drift/);
    expect(report.verify.exitCode).toBe(0);
  });

  it("/readyz answers 503 while PostgreSQL is down and 200 again by itself, and traffic resumes", () => {
    expect(report.readyz.length).toBe(2);
    for (const r of report.readyz) {
      expect(r.statuses.length, r.server).toBeGreaterThan(0);
      expect(r.statuses.every((s) => s === 503), `${r.server}: ${r.statuses.join(",")}`).toBe(true);
      expect(r.recoveredAfterMs, r.server).toBeGreaterThanOrEqual(0);
    }
    for (const ms of report.firstAckAfterPgStartMs) expect(ms).toBeLessThan(15_000);
  });

  it("what the servers print carries no SQL and no stack frames, even while the database fails", () => {
    expect(report.serverLogs.leaks).toEqual([]);
  });

  it("breaks no promise at all (the list scripts/faults-long.mjs checks)", () => {
    expect(violations(report)).toEqual([]);
  });
});

function summary(r: FaultRunReport) {
  return {
    durationSeconds: r.durationSeconds,
    operations: r.operations,
    attempts: r.attempts,
    faults: r.faults,
    retries: r.retries,
    readyz: r.readyz.map((x) => ({ server: x.server, during: x.statuses.length, recoveredAfterMs: x.recoveredAfterMs })),
    firstAckAfterPgStartMs: r.firstAckAfterPgStartMs,
    replay: { checked: r.replay.checked, differing: r.replay.differing.length, rowsWritten: r.replay.rowsWritten },
    lost: r.audit.lost.length,
    duplicated: r.audit.duplicated.length,
    phantom: r.audit.phantom.length,
    verify: r.verify.output,
    serverLogs: r.serverLogs,
  };
}
