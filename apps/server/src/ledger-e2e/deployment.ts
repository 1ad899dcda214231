import pg from "pg";
import { createTestDatabase, type TestDatabase } from "@account-balance/ledger/testing";
import { assertBuilt, childEnv, CLI_JS, freePort, MAIN_JS, runNode, startNode, waitFor, type Finished, type Running } from "../testing/process.js";
import { oneQueryAtATime, randomToken, startTestServer, type TestServer } from "../testing/server.js";
import { restFetch } from "../testing/protocols.js";

/**
 * What the ledger tests run against: one or more servers sharing one fresh database. Either the
 * in-process harness (one server, `app` reachable) or real `node dist/main.js` processes, so the
 * same test body can prove a rule on one instance and across instances.
 */
export interface Deployment {
  readonly label: string;
  /** One port per server; tests spread their requests over them. */
  readonly ports: readonly number[];
  readonly databaseUrl: string;
  readonly serviceToken: string;
  /** The in-process server, when there is one. */
  readonly inProcess?: TestServer;
  /** A local session (created in the shared database) for userId. */
  mintSession(userId: string, userType?: string): Promise<string>;
  /** A query on the shared database, for checking rows. */
  sql<R extends pg.QueryResultRow = Record<string, any>>(query: string, params?: unknown[]): Promise<R[]>;
  /** Processes: SIGTERM to each, resolved with how each exited. In-process: nothing (see close). */
  stop(): Promise<Finished[]>;
  /** Stops whatever still runs and drops the database. */
  close(): Promise<void>;
}

/** One in-process server (the harness in ../testing/server.ts). */
export async function inProcessDeployment(env: Record<string, string | undefined> = {}): Promise<Deployment> {
  const server = await startTestServer({ LOG_LEVEL: "info", DB_POOL_MAX: "10", ...env });
  return {
    label: "one in-process server",
    ports: [server.port],
    databaseUrl: server.databaseUrl,
    serviceToken: server.serviceToken,
    inProcess: server,
    mintSession: (userId, userType = "customer") => server.mintSession(userId, userType),
    sql: (q, params) => server.sql(q, params),
    stop: async () => [],
    close: () => server.close(),
  };
}

export interface ProcessDeploymentOptions {
  /** How many `node dist/main.js` to start on the database. */
  servers: number;
  /** Extra environment for every server. */
  env?: Record<string, string>;
}

/**
 * `servers` real server processes on one fresh database, all started at once (so they also
 * race each other's migrations), each on its own free port; resolves once every /readyz is 200.
 */
export async function processDeployment(opts: ProcessDeploymentOptions): Promise<Deployment> {
  assertBuilt();
  const db: TestDatabase = await createTestDatabase();
  const serviceToken = randomToken(40);
  const running: Running[] = [];
  const client = new pg.Client({ connectionString: db.url });
  client.on("error", () => undefined);
  const ports: number[] = [];
  const sessions = new Map<string, Promise<string>>();

  const stop = async (): Promise<Finished[]> => {
    for (const r of running) if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill("SIGTERM");
    return Promise.all(running.map((r) => r.exited));
  };
  const close = async () => {
    const kill = setTimeout(() => running.forEach((r) => r.child.kill("SIGKILL")), 15_000);
    try {
      await stop();
    } finally {
      clearTimeout(kill);
      await client.end().catch(() => undefined);
      await db.drop();
    }
  };

  try {
    for (let i = 0; i < opts.servers; i++) ports.push(await freePort());
    for (const port of ports) {
      const env = childEnv({
        DATABASE_URL: db.url,
        PORT: String(port),
        HOST: "127.0.0.1",
        SERVICE_TOKENS: serviceToken,
        EXPIRY_SWEEP_SECONDS: "1",
        SHUTDOWN_GRACE_MS: "3000",
        LOG_LEVEL: "info",
        ...opts.env,
      });
      running.push(startNode(MAIN_JS, [], env));
    }
    await Promise.all(
      running.map((r, i) =>
        waitFor(
          `server ${i} /readyz 200`,
          async () => {
            if (r.child.exitCode !== null) throw new Error(`server ${i} exited early: ${r.stderr()}`);
            const res = await restFetch(`http://127.0.0.1:${ports[i]}`, "GET", "/readyz", { signal: AbortSignal.timeout(2_000) });
            return res.status === 200;
          },
          60_000,
          100,
        ),
      ),
    );
    await client.connect();
  } catch (err) {
    await close().catch(() => undefined);
    throw err;
  }

  return {
    label: `${opts.servers} server processes`,
    ports,
    databaseUrl: db.url,
    serviceToken,
    mintSession(userId, userType = "customer") {
      // As an operator would: the CLI's `session mint` against the shared database.
      const key = `${userId}\n${userType}`;
      let minted = sessions.get(key);
      if (!minted) {
        minted = runNode(CLI_JS, ["session", "mint", "--user-id", userId, "--user-type", userType], childEnv({ DATABASE_URL: db.url }), 30_000).then(
          (r) => {
            if (r.code !== 0) throw new Error(`session mint failed (${r.code}): ${r.stderr}`);
            return (JSON.parse(r.stdout) as { session_id: string }).session_id;
          },
        );
        sessions.set(key, minted);
      }
      return minted;
    },
    sql: oneQueryAtATime(client),
    stop,
    close,
  };
}

/** `node dist/cli.js verify` against a database, as an operator runs it. */
export function runVerify(databaseUrl: string): Promise<Finished> {
  return runNode(CLI_JS, ["verify"], childEnv({ DATABASE_URL: databaseUrl }), 60_000);
}
