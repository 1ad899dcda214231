import { randomBytes } from "node:crypto";
import pg from "pg";
import { createTestDatabase, type TestDatabase } from "@account-balance/ledger/testing";
import { loadConfig, type Config } from "../config.js";
import { createLogger } from "../log.js";
import { startApp, type App } from "../app.js";

/**
 * A real server on a random port over a fresh database, for end-to-end tests. Everything the
 * server logs is kept in `logs` (debug level and up) so tests can check what it says, and
 * what it must never say.
 */
export interface TestServer {
  /** http://127.0.0.1:<port> */
  readonly baseUrl: string;
  readonly port: number;
  readonly app: App;
  readonly config: Config;
  /** The one SERVICE_TOKENS entry (40 characters) unless overridden. */
  readonly serviceToken: string;
  /** Captured JSON log lines, oldest first. */
  readonly logs: string[];
  /** The database URL the server uses (a database of its own). */
  readonly databaseUrl: string;
  /** A local session for userId; returns the session id. */
  mintSession(userId: string, userType?: string, ttlSeconds?: number): Promise<string>;
  /** A query on the server's database, for checking rows. */
  sql<R extends pg.QueryResultRow = Record<string, unknown>>(query: string, params?: unknown[]): Promise<R[]>;
  /** Stops the server, closes the query client, drops the database. */
  close(): Promise<void>;
}

/** A random token of `length` URL-safe characters, long enough for SERVICE_TOKENS / bridge secrets. */
export function randomToken(length = 40): string {
  return randomBytes(length).toString("base64url").slice(0, length);
}

/** Defaults every test server starts with; `env` overrides any of them. */
export function testEnv(databaseUrl: string, serviceToken: string): Record<string, string> {
  return {
    DATABASE_URL: databaseUrl,
    PORT: "0",
    HOST: "127.0.0.1",
    SERVICE_TOKENS: serviceToken,
    LOG_LEVEL: "debug",
    SHUTDOWN_GRACE_MS: "500",
    DB_POOL_MAX: "5",
  };
}

/**
 * Starts the whole app as main.ts does (loadConfig + startApp) on its own database.
 * `env` entries override the defaults; an entry set to undefined removes the default.
 */
/**
 * Rows of `query` on `client`, one query at a time: pg deprecates overlapping queries on a
 * client, and tests read with Promise.all. `ready` is the client's connect().
 */
export function oneQueryAtATime(client: pg.Client, ready: Promise<unknown> = Promise.resolve()) {
  let queued: Promise<unknown> = ready;
  return async <R extends pg.QueryResultRow>(query: string, params: unknown[] = []): Promise<R[]> => {
    const result = queued.then(() => client.query<R>(query, params));
    queued = result.catch(() => undefined);
    return (await result).rows;
  };
}

export async function startTestServer(env: Record<string, string | undefined> = {}): Promise<TestServer> {
  const db: TestDatabase = await createTestDatabase();
  const serviceToken = randomToken(40);
  const merged: Record<string, string | undefined> = { ...testEnv(db.url, serviceToken), ...env };
  const logs: string[] = [];
  let app: App;
  let config: Config;
  try {
    config = loadConfig(merged as NodeJS.ProcessEnv);
    app = await startApp(config, createLogger("debug", (line) => logs.push(line)));
  } catch (err) {
    await db.drop().catch(() => undefined);
    throw err;
  }
  const client = new pg.Client({ connectionString: db.url });
  client.on("error", () => undefined);
  const connected = client.connect();
  const query = oneQueryAtATime(client, connected);
  let closed: Promise<void> | undefined;
  const baseUrl = `http://127.0.0.1:${app.port}`;
  return {
    baseUrl,
    port: app.port,
    app,
    config,
    serviceToken: merged.SERVICE_TOKENS === serviceToken ? serviceToken : (merged.SERVICE_TOKENS ?? "").split(",")[0] ?? "",
    logs,
    databaseUrl: db.url,
    async mintSession(userId, userType = "customer", ttlSeconds = 3600) {
      const minted = await app.ledger.sessions.mint({ userId, userType, ttlSeconds });
      return minted.sessionId;
    },
    sql: query,
    close() {
      closed ??= (async () => {
        try {
          await app.close();
        } finally {
          await connected.then(() => client.end()).catch(() => undefined);
          await db.drop();
        }
      })();
      return closed;
    },
  };
}
