import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";

/** The server under test as a child process (node apps/server/dist/main.js). */
export interface ServerProcess {
  readonly pid: number;
  readonly baseUrl: string;
  /** The last lines it wrote on stderr (warnings and errors only). */
  stderrTail(): string;
  /** SIGTERM, then waits for it to drain and exit (node --cpu-prof writes its profile then). */
  stop(): Promise<void>;
}

export interface StartServer {
  mainJs: string;
  cwd: string;
  databaseUrl: string;
  serviceToken: string;
  poolMax: number;
  cpuProfDir?: string | undefined;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      const port = typeof a === "object" && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export async function startServer(opts: StartServer): Promise<ServerProcess> {
  if (!fs.existsSync(opts.mainJs)) throw new Error(`${opts.mainJs} is missing: build first (pnpm build)`);
  const port = await freePort();
  const nodeArgs = [...startFlags(opts.mainJs), ...(opts.cpuProfDir ? ["--cpu-prof", `--cpu-prof-dir=${opts.cpuProfDir}`] : [])];
  // The caller's environment passes through (e.g. a ledger tuning variable), the bench's own settings win.
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    DATABASE_URL: opts.databaseUrl,
    PORT: String(port),
    HOST: "127.0.0.1",
    SERVICE_TOKENS: opts.serviceToken,
    LOG_LEVEL: process.env.BENCH_SERVER_LOG_LEVEL ?? "warn",
    DB_POOL_MAX: String(opts.poolMax),
    MIGRATE_ON_START: "true",
    // The sweeper would add its own queries to the measurements.
    EXPIRY_SWEEP_SECONDS: "86400",
    ACCOUNT_BALANCE_ENABLED: "true",
    ACCOUNT_BALANCE_REQUIRE_AUTH: "true",
    AUTH_PROVIDER: "local",
  };
  const child: ChildProcess = spawn(process.execPath, [...nodeArgs, opts.mainJs], { cwd: opts.cwd, env, stdio: ["ignore", "ignore", "pipe"] });
  let tail = "";
  child.stderr!.on("data", (c: Buffer) => {
    tail = (tail + c.toString("utf8")).slice(-4000);
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const baseUrl = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`server exited (${child.exitCode}) during start: ${tail}`);
    const ok = await fetch(`${baseUrl}/readyz`).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ok) break;
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`server not ready after 60 s: ${tail}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    pid: child.pid!,
    baseUrl,
    stderrTail: () => tail,
    async stop() {
      if (child.exitCode !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/**
 * RPCs by final code from the server's /metrics: how many ended OK, how many did not, and
 * the latter by code (so a run's failures say what they were).
 */
export async function rpcCounts(baseUrl: string): Promise<{ ok: number; failed: number; byCode: Map<string, number> }> {
  const text = await fetch(`${baseUrl}/metrics`).then((r) => r.text());
  let ok = 0;
  let failed = 0;
  const byCode = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (!line.startsWith("account_balance_rpc_requests_total{")) continue;
    const n = Number(line.slice(line.lastIndexOf(" ") + 1));
    const code = /code="([^"]*)"/.exec(line)?.[1] ?? "?";
    if (code === "OK") ok += n;
    else {
      failed += n;
      byCode.set(code, (byCode.get(code) ?? 0) + n);
    }
  }
  return { ok, failed, byCode };
}

/**
 * The node flags of the server package's own `start` script (its heap cap), so the server
 * is measured as `pnpm start` runs it.
 */
export function startFlags(mainJs: string): string[] {
  const pkg = JSON.parse(fs.readFileSync(path.join(path.dirname(mainJs), "..", "package.json"), "utf8")) as { scripts?: { start?: string } };
  const m = /^node((?:\s+--\S+)*)\s+dist\/main\.js$/.exec(pkg.scripts?.start ?? "");
  if (!m) throw new Error(`apps/server's start script is not "node [--flags] dist/main.js": ${pkg.scripts?.start}`);
  return m[1]!.trim().split(/\s+/).filter((f) => f !== "");
}
