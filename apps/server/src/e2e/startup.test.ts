import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { execFile } from "node:child_process";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { assertBuilt, childEnv, CLI_JS, freePort, MAIN_JS, runNode, startNode, waitFor, type Running } from "../testing/process.js";
import pg from "pg";
import { randomToken, startTestServer, testEnv } from "../testing/server.js";
import { restFetch } from "../testing/protocols.js";

// The built server (dist/main.js, dist/cli.js) started as a user would start it.

const execFileAsync = promisify(execFile);
const BASE = "/bridge-payment/account-balance";

beforeAll(() => assertBuilt());

// Each case is a fresh node process (1-3 s; much more on a loaded 2-CPU machine, hence the
// generous kill timeout: a config error must exit, but a slow start is not a failure).
const CONFIG_KILL_MS = 60_000;
const CONFIG_TEST_MS = 70_000;

describe("a bad configuration stops the server with a message naming the variable", () => {
  it.for([
    // (Every variable's checks are unit-tested in config.test.ts; these prove the process exits on them.)
    ["PORT=abc", { PORT: "abc" }, ["PORT"]],
    ["AUTH_PROVIDER=flowless without URL or secret", { AUTH_PROVIDER: "flowless" }, ["BRIDGE_VALIDATION_SECRET", "FLOWLESS_API_URL"]],
    ["a short bridge secret", { AUTH_PROVIDER: "flowless", FLOWLESS_API_URL: "http://127.0.0.1:9", BRIDGE_VALIDATION_SECRET: "short-secret" }, ["BRIDGE_VALIDATION_SECRET"]],
    ["DATABASE_URL=mysql://x", { DATABASE_URL: "mysql://user:pw@host/db" }, ["DATABASE_URL"]],
  ] as const)("%s", { timeout: CONFIG_TEST_MS }, async ([, env, variables], { expect }) => {
    const r = await runNode(MAIN_JS, [], childEnv({ ...env }), CONFIG_KILL_MS);
    expect(r.code, r.stderr).not.toBe(0);
    expect(r.code).not.toBeNull();
    for (const v of variables) expect(r.stderr).toContain(v);
    expect(r.stderr).toMatch(/configuration error/i);
    // A config error is found before anything starts: no listening, no stack trace.
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(r.stderr).not.toContain("user:pw");
  });

  it("a short service token is refused without echoing it", { timeout: CONFIG_TEST_MS }, async ({ expect }) => {
    const token = "tok-short-but-secret";
    const r = await runNode(MAIN_JS, [], childEnv({ SERVICE_TOKENS: token, PORT: "0" }), CONFIG_KILL_MS);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("SERVICE_TOKENS");
    expect(r.stderr).not.toContain(token);
  });

  it("an unreachable database stops the server (non-zero) without printing the password", { timeout: CONFIG_TEST_MS }, async ({ expect }) => {
    const port = await freePort();
    const password = "pw-" + randomToken(20);
    const r = await runNode(MAIN_JS, [], childEnv({ DATABASE_URL: `postgres://u:${password}@127.0.0.1:${port}/db`, PORT: "0" }), CONFIG_KILL_MS);
    expect(r.code).not.toBe(0);
    expect(r.code).not.toBeNull();
    expect(r.stderr + r.stdout).not.toContain(password);
    expect(r.stderr).toMatch(/failed to start/);
  });
});

async function postgresProcessesFor(dataDir: string): Promise<string[]> {
  const { stdout } = await execFileAsync("ps", ["-eo", "pid,args"]);
  return stdout.split("\n").filter((l) => l.includes(dataDir) && !l.includes("vitest"));
}

describe("first start as a new user: embedded PostgreSQL, CLI session, SIGTERM", () => {
  let tmp: string;
  let server: Running | undefined;

  beforeAll(async () => {
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), "ab-e2e-boot-"));
    // As root the cluster runs as user "postgres", which must be able to enter the folder.
    await fs.chmod(tmp, 0o755);
  });

  afterAll(async () => {
    if (server && server.child.exitCode === null && server.child.signalCode === null) {
      server.child.kill("SIGTERM");
      await server.exited;
    }
    await fs.rm(tmp, { recursive: true, force: true });
  });

  it("boots, serves a balance created with a CLI-minted session, and stops cleanly", { timeout: 150_000 }, async () => {
    const dataDir = path.join(tmp, "pg");
    const port = await freePort();
    const env = childEnv({ EMBEDDED_PG_DIR: dataDir, PORT: String(port), HOST: "127.0.0.1", SHUTDOWN_GRACE_MS: "2000" });
    const base = `http://127.0.0.1:${port}`;

    server = startNode(MAIN_JS, [], env, tmp);
    const running = server;
    await waitFor(
      "/readyz 200",
      async () => {
        if (running.child.exitCode !== null) throw new Error(`server exited early: ${running.stderr()}`);
        return (await restFetch(base, "GET", "/readyz", { signal: AbortSignal.timeout(2_000) })).status === 200;
      },
      120_000,
    );
    await expect(fs.stat(path.join(dataDir, "PG_VERSION"))).resolves.toBeTruthy();

    // The CLI shares the cluster the server started (same EMBEDDED_PG_DIR).
    const minted = await runNode(CLI_JS, ["session", "mint", "--user-id", "newbie", "--user-type", "customer"], env, 60_000);
    expect(minted.code, minted.stderr).toBe(0);
    const { session_id: sid, expires_at: expiresAt } = JSON.parse(minted.stdout) as { session_id: string; expires_at: string };
    expect(sid).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(Date.parse(expiresAt)).toBeGreaterThan(Date.now());

    const created = await restFetch(base, "POST", BASE, {
      headers: { "x-session-id": sid, "content-type": "application/json" },
      body: JSON.stringify({ balance_type: "credits", currency: "EUR", metadata: { source: "signup" } }),
    });
    expect(created.status, created.text).toBe(201);
    expect(created.body.data).toMatchObject({ user_id: "newbie", balance_type: "credits", currency: "EUR", balance_cents: 0, status: "active" });
    const listed = await restFetch(base, "GET", `${BASE}/me/balances?limit=10&currency=EUR`, { headers: { "x-session-id": sid } });
    expect(listed.body).toMatchObject({ success: true, meta: { page: 1, limit: 10, total: 1, hasMore: false } });

    expect((await postgresProcessesFor(dataDir)).length).toBeGreaterThan(0);
    server.child.kill("SIGTERM");
    const done = await server.exited;
    expect(done.signal).toBeNull();
    expect(done.code, done.stderr).toBe(0);
    expect(done.stderr).toContain('"msg":"stopped"');
    expect(done.stderr).not.toContain(sid);
    await waitFor("postgres to be gone", async () => (await postgresProcessesFor(dataDir)).length === 0, 20_000);
    await expect(fs.stat(path.join(dataDir, "postmaster.pid"))).rejects.toThrow();
  });
});

describe("stopping with calls in flight", () => {
  it("a repeat of the signal within 2 s is the same Ctrl-C; a later one exits at once, code 1", { timeout: 60_000 }, async () => {
    const db = await startTestServer();
    const port = await freePort();
    const server = startNode(MAIN_JS, [], childEnv({ ...testEnv(db.databaseUrl, db.serviceToken), PORT: String(port), SHUTDOWN_GRACE_MS: "60000" }));
    const base = `http://127.0.0.1:${port}`;
    const holder = new pg.Client({ connectionString: db.databaseUrl });
    try {
      await waitFor("the server", async () => (await fetch(`${base}/healthz`).catch(() => undefined))?.status === 200);
      // A read held up by a table lock: the drain would wait for it (about 5 s, the lock timeout).
      await holder.connect();
      await holder.query("begin");
      await holder.query("lock table account_balances in access exclusive mode");
      const inFlight = fetch(`${base}${BASE}/users/u1/balances`, { headers: { authorization: `Bearer ${db.serviceToken}` } }).catch(() => undefined);
      await new Promise((r) => setTimeout(r, 300));
      server.child.kill("SIGTERM");
      await new Promise((r) => setTimeout(r, 100));
      server.child.kill("SIGTERM");
      await new Promise((r) => setTimeout(r, 1_000));
      expect(server.child.exitCode).toBeNull();
      expect(server.stderr()).not.toContain("second signal");
      await new Promise((r) => setTimeout(r, 1_200));
      server.child.kill("SIGTERM");
      const done = await server.exited;
      expect(done.code, done.stderr).toBe(1);
      expect(done.stderr).toContain("second signal: exiting without waiting for the calls in flight");
      expect(done.stderr).not.toContain('"msg":"stopped"');
      await inFlight;
    } finally {
      if (server.child.exitCode === null) server.child.kill("SIGKILL");
      await holder.query("rollback").catch(() => {});
      await holder.end().catch(() => {});
      await db.close();
    }
  });
});
