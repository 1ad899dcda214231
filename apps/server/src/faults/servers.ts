import { childEnv, freePort, MAIN_JS, startNode, waitFor, type Running } from "../testing/process.js";

/**
 * A server process (the built dist/main.js, as operators run it) on a fixed port, so that it
 * can be killed with SIGKILL and started again where clients expect it.
 */
export interface ServerProcess {
  readonly name: string;
  readonly port: number;
  readonly baseUrl: string;
  /** The process is up (not killed, not exited). */
  readonly alive: boolean;
  /** How many times the process has been started. */
  readonly starts: number;
  /** Starts the process and waits until /readyz answers 200. */
  start(): Promise<void>;
  /** SIGKILL: no drain, no cleanup, connections cut mid-flight. */
  kill9(): Promise<void>;
  /** SIGTERM and wait for the exit (the end of a test). */
  stop(): Promise<void>;
  /** Exits that nobody asked for (a crash): code/signal and the last lines of stderr. */
  readonly crashes: string[];
  /** Everything the process wrote on stderr, every start included. */
  logs(): string;
}

export interface ServerEnv {
  databaseUrl: string;
  serviceToken: string;
  /** Extra variables (e.g. LOG_LEVEL). */
  env?: Record<string, string>;
}

export async function createServerProcess(name: string, opts: ServerEnv): Promise<ServerProcess> {
  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  let current: Running | undefined;
  let expectingExit = false;
  let starts = 0;
  const crashes: string[] = [];
  const pastLogs: string[] = [];
  const env = childEnv({
    DATABASE_URL: opts.databaseUrl,
    PORT: String(port),
    HOST: "127.0.0.1",
    SERVICE_TOKENS: opts.serviceToken,
    LOG_LEVEL: "warn",
    DB_POOL_MAX: "5",
    SHUTDOWN_GRACE_MS: "500",
    ...opts.env,
  });

  const readyz = async (): Promise<boolean> => {
    const res = await fetch(`${baseUrl}/readyz`, { signal: AbortSignal.timeout(3_000) });
    await res.arrayBuffer();
    return res.status === 200;
  };

  return {
    name,
    port,
    baseUrl,
    get alive() {
      return current !== undefined;
    },
    get starts() {
      return starts;
    },
    crashes,
    logs: () => pastLogs.join("") + (current?.stderr() ?? ""),
    async start() {
      if (current) return;
      expectingExit = false;
      const run = startNode(MAIN_JS, [], env);
      current = run;
      starts += 1;
      void run.exited.then((f) => {
        pastLogs.push(f.stderr);
        if (current === run) current = undefined;
        if (!expectingExit) crashes.push(`${name} exited by itself (code ${f.code}, signal ${f.signal}): ${f.stderr.slice(-2000)}`);
      });
      const exitedEarly = run.exited.then((f) => {
        throw new Error(`${name} exited while starting (code ${f.code}): ${f.stderr.slice(-2000)}`);
      });
      exitedEarly.catch(() => undefined);
      await Promise.race([waitFor(`${name} ready on ${baseUrl}`, readyz, 60_000, 100), exitedEarly]);
    },
    async kill9() {
      const run = current;
      if (!run) return;
      expectingExit = true;
      run.child.kill("SIGKILL");
      await run.exited;
    },
    async stop() {
      const run = current;
      if (!run) return;
      expectingExit = true;
      run.child.kill("SIGTERM");
      const timer = setTimeout(() => run.child.kill("SIGKILL"), 10_000);
      await run.exited;
      clearTimeout(timer);
    },
  };
}
