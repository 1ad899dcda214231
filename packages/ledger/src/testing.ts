import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import pg from "pg";
import { makeTempDir, startEmbeddedPostgres, type RunningPostgres } from "./embedded.js";

// For tests that must own a cluster (stop and start it): the fault tests of apps/server.
export { makeTempDir, startEmbeddedPostgres, type RunningPostgres } from "./embedded.js";

export interface TestDatabase {
  /** postgres:// URL of a new, empty database. */
  url: string;
  /** Drops the database (terminating its connections). */
  drop(): Promise<void>;
}

function uniqueName(): string {
  return `ledger_test_${process.pid}_${randomBytes(5).toString("hex")}`;
}

function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${encodeURIComponent(database)}`;
  return u.toString();
}

async function onServer(adminUrl: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 10_000 });
  client.on("error", () => {});
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

const ident = (name: string): string => `"${name.replace(/"/g, '""')}"`;

// One embedded cluster per process, shared by the databases created in it and stopped
// with the last of them.
interface SharedCluster {
  running: Promise<RunningPostgres>;
  dir: Promise<string>;
  users: number;
}
let shared: SharedCluster | undefined;

function acquireCluster(): SharedCluster {
  if (!shared) {
    const dir = makeTempDir("ledger-test-pg-");
    const cluster: SharedCluster = {
      dir,
      running: dir.then((d) => startEmbeddedPostgres({ dataDir: path.join(d, "data") })),
      users: 0,
    };
    // If the process ends without dropping everything, at least remove the folder.
    void dir.then((d) => process.once("exit", () => fs.rmSync(d, { recursive: true, force: true })));
    shared = cluster;
  }
  shared.users += 1;
  return shared;
}

async function releaseCluster(cluster: SharedCluster): Promise<void> {
  cluster.users -= 1;
  if (cluster.users > 0) return;
  if (shared === cluster) shared = undefined;
  const running = await cluster.running.catch(() => undefined);
  await running?.stop();
  await fs.promises.rm(await cluster.dir, { recursive: true, force: true });
}

/**
 * A fresh database for one test file. With TEST_DATABASE_URL set it is created on that
 * server; otherwise on an embedded PostgreSQL started once per process in a temp folder.
 */
export async function createTestDatabase(): Promise<TestDatabase> {
  const name = uniqueName();
  const serverUrl = process.env.TEST_DATABASE_URL;
  if (serverUrl) {
    await onServer(serverUrl, `create database ${ident(name)}`);
    return {
      url: withDatabase(serverUrl, name),
      drop: () => onServer(serverUrl, `drop database if exists ${ident(name)} with (force)`),
    };
  }

  const cluster = acquireCluster();
  let running: RunningPostgres;
  try {
    running = await cluster.running;
    await onServer(running.url("postgres"), `create database ${ident(name)}`);
  } catch (err) {
    await releaseCluster(cluster);
    throw err;
  }
  let dropped: Promise<void> | undefined;
  return {
    url: running.url(name),
    drop() {
      dropped ??= (async () => {
        try {
          await onServer(running.url("postgres"), `drop database if exists ${ident(name)} with (force)`);
        } finally {
          await releaseCluster(cluster);
        }
      })();
      return dropped;
    },
  };
}
