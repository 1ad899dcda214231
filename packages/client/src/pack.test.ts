import { execFile } from "node:child_process";
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startTestServer, type TestServer } from "@account-balance/server/dist/testing/server.js";

// The package as another repository gets it: `pnpm pack`, then `npm install` of the tarball in
// a scratch project outside the workspace (its other dependencies come from the registry),
// then a script that uses it against a real server, and a type check of a TypeScript consumer.

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
const pkgDir = join(here, "..");
const tsc = join(pkgDir, "node_modules", ".bin", "tsc");

let server: TestServer;
let scratch: string;

beforeAll(async () => {
  server = await startTestServer();
  scratch = mkdtempSync(join(tmpdir(), "account-balance-client-consumer-"));
}, 120_000);

afterAll(async () => {
  await server?.close();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

it("installs from its tarball outside the workspace and works against a real server", async () => {
  const own = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8")) as { version: string };
  // Versioned together with the contract: the same version as the generated contract package.
  const contract = JSON.parse(readFileSync(join(pkgDir, "..", "proto", "package.json"), "utf8")) as { version: string };
  expect(own.version).toBe(contract.version);
  await run("pnpm", ["pack", "--pack-destination", scratch], { cwd: pkgDir });
  const tarball = readdirSync(scratch).find((f) => f.endsWith(".tgz"));
  expect(tarball).toBe(`account-balance-client-${own.version}.tgz`);

  writeFileSync(
    join(scratch, "package.json"),
    JSON.stringify({
      name: "scratch-consumer",
      private: true,
      type: "module",
      dependencies: {
        "@account-balance/client": `file:./${tarball}`,
        // The oldest connect the peer ranges allow, whose transports declare Node 20 (2.2
        // declares 22): installed with --engine-strict, so a conflict would fail here.
        "@connectrpc/connect": "2.1.1",
        "@connectrpc/connect-node": "2.1.1",
        "@connectrpc/connect-web": "2.1.1",
        "@types/node": "20.19.43",
      },
    }),
  );
  await run("npm", ["install", "--engine-strict", "--no-audit", "--no-fund", "--loglevel=error"], { cwd: scratch, timeout: 90_000 });
  // One connect in the tree: the client uses the project's own copy.
  const { stdout: tree } = await run("npm", ["ls", "@connectrpc/connect", "--all", "--parseable"], { cwd: scratch });
  expect(tree.trim().split("\n").filter((l) => l.endsWith("node_modules/@connectrpc/connect"))).toHaveLength(1);
  // Nothing of the workspace leaked into the published manifest.
  const installed = JSON.parse(readFileSync(join(scratch, "node_modules/@account-balance/client/package.json"), "utf8"));
  expect(JSON.stringify(installed.dependencies)).not.toMatch(/workspace:|@account-balance\//);
  // Source maps carry their sources: src/ is not shipped, and a bundler's source-map loader
  // would otherwise warn about every file.
  const map = JSON.parse(readFileSync(join(scratch, "node_modules/@account-balance/client/dist/client.js.map"), "utf8"));
  expect(map.sourcesContent?.[0]).toContain("createAccountBalanceClient");

  copyFileSync(join(pkgDir, "test-fixtures", "consumer.mjs"), join(scratch, "consumer.mjs"));
  const { stdout } = await run("node", ["consumer.mjs"], {
    cwd: scratch,
    timeout: 30_000,
    env: { ...process.env, BASE_URL: server.baseUrl, SERVICE_TOKEN: server.serviceToken },
  });
  const result = JSON.parse(stdout.trim());
  for (const protocol of ["grpc", "connect"]) {
    expect(result[protocol]).toEqual({
      type: "bigint",
      balance: "9007199254740000",
      reason: "INSUFFICIENT_BALANCE:bigint:9007199254740000",
    });
  }
  expect(result.web).toEqual(["9007199254740000"]);
  expect(result.schema).toBe("accountbalance.v1.Movement");
  const rows = await server.sql<{ n: string }>(
    "select count(*)::text as n from account_transactions t join account_balances b on b.id = t.account_balance_id where b.user_id like 'packed-%'",
  );
  expect(rows[0]!.n).toBe("4");

  // The published types, resolved through `exports` by a TypeScript consumer.
  copyFileSync(join(pkgDir, "test-fixtures", "consumer.ts"), join(scratch, "consumer.ts"));
  writeFileSync(
    join(scratch, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: { target: "ES2022", module: "NodeNext", moduleResolution: "NodeNext", strict: true, noEmit: true, types: ["node"] },
      files: ["consumer.ts"],
    }),
  );
  await run(tsc, ["-p", "tsconfig.json"], { cwd: scratch });
}, 120_000);
