import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import { REPO_ROOT } from "./protocols.js";

/** The built entry points (the turbo `test` task builds first). */
export const MAIN_JS = `${REPO_ROOT}apps/server/dist/main.js`;
export const CLI_JS = `${REPO_ROOT}apps/server/dist/cli.js`;

export function assertBuilt(): void {
  for (const f of [MAIN_JS, CLI_JS]) {
    if (!fs.existsSync(f)) throw new Error(`${f} is missing: build first (pnpm turbo run build --filter=@account-balance/server...)`);
  }
}

/** The environment of a child: this process' PATH and HOME only, plus `env` (no leaked DATABASE_URL etc.). */
export function childEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const base: NodeJS.ProcessEnv = {};
  for (const k of ["PATH", "HOME", "TMPDIR", "LANG"]) if (process.env[k] !== undefined) base[k] = process.env[k];
  return { ...base, ...env };
}

export interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface Running {
  readonly child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves when the process has exited. */
  readonly exited: Promise<Finished>;
}

/** Starts `node <script> ...args` with exactly `env` (see childEnv). */
export function startNode(script: string, args: string[], env: NodeJS.ProcessEnv, cwd = REPO_ROOT): Running {
  const child = spawn(process.execPath, [script, ...args], { env, cwd, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout!.on("data", (c: Buffer) => (out += c.toString("utf8")));
  child.stderr!.on("data", (c: Buffer) => (err += c.toString("utf8")));
  const exited = new Promise<Finished>((resolve) => {
    child.on("close", (code, signal) => resolve({ code, signal, stdout: out, stderr: err }));
  });
  return { child, stdout: () => out, stderr: () => err, exited };
}

/** Runs `node <script> ...args` to the end, killing it after timeoutMs. */
export async function runNode(script: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs = 30_000): Promise<Finished> {
  const r = startNode(script, args, env);
  const timer = setTimeout(() => r.child.kill("SIGKILL"), timeoutMs);
  try {
    return await r.exited;
  } finally {
    clearTimeout(timer);
  }
}

/** A TCP port nobody listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Polls `probe` until it returns true, or throws after timeoutMs (with `what` in the message). */
export async function waitFor(what: string, probe: () => Promise<boolean>, timeoutMs = 60_000, everyMs = 200): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await probe().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
