import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "@account-balance/ledger/testing";
import { CLIENTS, SCENARIOS, parseOptions } from "./options.js";
import { REPO_ROOT, runBench, type BenchReport } from "./main.js";

// The benchmark's CI check: the smoke mode seeds a database of its own, starts the built
// server, drives every scenario with every load generator and writes its JSON. Only that it
// runs is checked, never a timing: CI machines are shared and slow.

let db: TestDatabase;
let resultsDir: string;

beforeAll(async () => {
  db = await createTestDatabase();
  resultsDir = fs.mkdtempSync(path.join(os.tmpdir(), "bench-results-"));
});

afterAll(async () => {
  if (resultsDir) fs.rmSync(resultsDir, { recursive: true, force: true });
  await db?.drop();
});

describe("pnpm bench --smoke", () => {
  it("runs every scenario and writes a results JSON", async () => {
    const opts = parseOptions(["--smoke", "--database-url", db.url, "--results", resultsDir], {}, REPO_ROOT);
    const { file } = await runBench(opts);

    expect(path.dirname(file)).toBe(resultsDir);
    const report = JSON.parse(fs.readFileSync(file, "utf8")) as BenchReport;
    expect(report.options.database).not.toContain("password");
    for (const scenario of SCENARIOS) {
      const rows = report.rows.filter((r) => r.scenario === scenario);
      // The baseline and every client: run, or skipped with a reason (a missing tool, or a
      // scenario the tool cannot express).
      expect(rows.map((r) => r.client).sort()).toEqual(["baseline", ...CLIENTS].sort());
      for (const r of rows) {
        if (r.skipped) {
          expect(r.client).toMatch(/^(h2load|wrk)-/);
          continue;
        }
        expect(r.ok, `${scenario} ${r.client}: ${r.errorSamples.join(" | ")}`).toBeGreaterThan(0);
      }
      // The Node clients and the baseline check every answer: no errors at all (grpc-raw does
      // not decode grpc-status; the server's failed-RPC count covers it).
      for (const r of rows.filter((r) => ["baseline", "grpc-js", "grpc-h2", "grpc-raw", "connect", "rest"].includes(r.client))) {
        expect(r.errors, `${scenario} ${r.client}: ${r.errorSamples.join(" | ")}`).toBe(0);
        expect(r.server?.failedRpcs ?? 0, `${scenario} ${r.client}: failed RPCs on the server`).toBe(0);
        expect(r.server?.canceledRpcs ?? 0, `${scenario} ${r.client}: canceled RPCs on the server`).toBe(0);
      }
    }
    expect(report.targets.map((t) => t.name)).toHaveLength(5);
  });
});
