import fs from "node:fs/promises";
import path from "node:path";
import pg from "pg";
import { makeTempDir, startEmbeddedPostgres, type RunningPostgres } from "@account-balance/ledger/testing";
import { freePort } from "../testing/process.js";

/**
 * A PostgreSQL cluster that the fault test owns, so it can stop it and start it again on the
 * same port and data folder while servers keep their DATABASE_URL. Always embedded, even when
 * TEST_DATABASE_URL is set: a shared server cannot be restarted by a test.
 */
export interface OwnedCluster {
  /** postgres:// URL of the test's database. */
  readonly url: string;
  readonly port: number;
  readonly running: boolean;
  /** Fast shutdown (every session gets 57P01), as an operator's restart does. */
  stop(): Promise<void>;
  /** Starts it again on the same port and data folder. */
  start(): Promise<void>;
  /** pg_terminate_backend on every other connection to the database; returns how many. */
  terminateBackends(): Promise<number>;
  /** One query on a short-lived connection. */
  sql<R extends pg.QueryResultRow = Record<string, unknown>>(query: string, params?: unknown[]): Promise<R[]>;
  /** Stops the cluster and removes its folder. */
  destroy(): Promise<void>;
}

export async function startOwnedCluster(database = "faults"): Promise<OwnedCluster> {
  const dir = await makeTempDir("faults-pg-");
  const dataDir = path.join(dir, "data");
  const port = await freePort();
  let handle: RunningPostgres | undefined = await startEmbeddedPostgres({ dataDir, port });
  await handle.ensureDatabase(database);
  const url = handle.url(database);

  const sql = async <R extends pg.QueryResultRow>(query: string, params: unknown[] = []): Promise<R[]> => {
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
    client.on("error", () => undefined);
    await client.connect();
    try {
      return (await client.query<R>(query, params)).rows;
    } finally {
      await client.end().catch(() => undefined);
    }
  };

  return {
    url,
    port,
    get running() {
      return handle !== undefined;
    },
    async stop() {
      const h = handle;
      handle = undefined;
      await h?.stop();
    },
    async start() {
      if (handle) return;
      handle = await startEmbeddedPostgres({ dataDir, port });
    },
    async terminateBackends() {
      const rows = await sql<{ terminated: boolean }>(
        `select pg_terminate_backend(pid) as terminated from pg_stat_activity
          where datname = current_database() and pid <> pg_backend_pid()`,
      );
      return rows.filter((r) => r.terminated).length;
    },
    sql,
    async destroy() {
      await handle?.stop().catch(() => undefined);
      handle = undefined;
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}
