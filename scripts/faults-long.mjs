#!/usr/bin/env node
// The long fault run: the same scenario as apps/server/src/faults/faults.test.ts (CI runs one
// cycle), repeated for --minutes. Each cycle: kill -9 of a server and its restart, three rounds
// of pg_terminate_backend, a PostgreSQL restart with /readyz watched; at the end one of the
// two servers is killed for good. Then the ledger is audited against what clients were told.
//
//   pnpm turbo run build --filter=@account-balance/server...
//   node scripts/faults-long.mjs --minutes 10 [--workers 8] [--balances 12] [--outage-seconds 2.5] [--json report.json]
//
// Exits 1 if any invariant was broken (the list is printed), 0 otherwise.
import fs from "node:fs";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    minutes: { type: "string", default: "10" },
    workers: { type: "string", default: "8" },
    balances: { type: "string", default: "12" },
    "outage-seconds": { type: "string", default: "2.5" },
    json: { type: "string" },
  },
});
const num = (name, v, min) => {
  const n = Number(v);
  if (!Number.isFinite(n) || n < min) {
    process.stderr.write(`--${name} must be a number >= ${min}\n`);
    process.exit(2);
  }
  return n;
};
const minutes = num("minutes", values.minutes, 1);

const scenarioUrl = new URL("../apps/server/dist/faults/scenario.js", import.meta.url);
if (!fs.existsSync(scenarioUrl)) {
  process.stderr.write("apps/server/dist is missing: pnpm turbo run build --filter=@account-balance/server...\n");
  process.exit(2);
}
const { runFaults, violations } = await import(scenarioUrl.href);

const t0 = Date.now();
const report = await runFaults({
  minutes,
  workers: num("workers", values.workers, 1),
  balances: num("balances", values.balances, 1),
  pgOutageSeconds: num("outage-seconds", values["outage-seconds"], 0.5),
  log: (line) => process.stderr.write(`[faults ${((Date.now() - t0) / 1000).toFixed(0)}s] ${line}\n`),
});
const broken = violations(report);
const summary = {
  durationSeconds: report.durationSeconds,
  operations: report.operations,
  attempts: report.attempts,
  byProtocol: report.byProtocol,
  faults: report.faults,
  retries: report.retries,
  readyz: report.readyz.map((r) => ({ server: r.server, samplesDuringOutage: r.statuses.length, all503: r.statuses.every((s) => s === 503), recoveredAfterMs: r.recoveredAfterMs })),
  firstAckAfterPgStartMs: report.firstAckAfterPgStartMs,
  replay: { checked: report.replay.checked, differing: report.replay.differing.length, rowsWritten: report.replay.rowsWritten },
  lost: report.audit.lost.length,
  duplicated: report.audit.duplicated.length,
  phantom: report.audit.phantom.length,
  balanceDrift: report.audit.balanceDrift.length,
  verify: report.verify.output,
  serverLogs: report.serverLogs,
  violations: broken,
};
process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
if (values.json) fs.writeFileSync(values.json, `${JSON.stringify(report, null, 2)}\n`);
process.exit(broken.length === 0 ? 0 : 1);
