import fs from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openLedger } from "./index.js";

let dir: string;

beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "ledger-embedded-"));
  // As root the cluster runs as user "postgres", which must be able to enter this folder.
  await fs.chmod(dir, 0o755);
});

afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

describe("openLedger without databaseUrl", () => {
  it("boots an embedded PostgreSQL in dataDir, is ready, keeps data across restarts, and stops on close", async () => {
    const dataDir = path.join(dir, "pg");
    // What a first start cut short during initdb leaves behind: its staging folder.
    await fs.mkdir(path.join(dir, "pg.init-cut"));
    await fs.writeFile(path.join(dir, "pg.init-cut", "PG_VERSION"), "18\n");
    const yesterday = new Date(Date.now() - 86_400_000);
    await fs.utimes(path.join(dir, "pg.init-cut"), yesterday, yesterday);
    const logs: string[] = [];
    const first = await openLedger({ dataDir, log: (m) => logs.push(m) });
    // The cluster arrives whole, password file included, and the leftover is gone.
    expect((await fs.readdir(dir)).sort()).toEqual(["pg"]);
    await expect(fs.stat(path.join(dataDir, "ledger-superuser-password"))).resolves.toBeTruthy();
    expect(first.embedded).toBe(true);
    expect(await first.ready()).toEqual({ ok: true });
    const balance = await first.balances.create({
      userId: "embedded-user",
      balanceType: "general",
      balanceCents: 42n,
      currency: "JPY",
      status: "active",
      metadata: {},
    });
    const port = Number(logs.find((l) => l.includes("listening on"))?.match(/:(\d+)$/)?.[1]);
    expect(port).toBeGreaterThan(0);
    expect(await canConnect(port)).toBe(true);
    await first.close();
    expect(await canConnect(port)).toBe(false);
    await expect(fs.stat(path.join(dataDir, "PG_VERSION"))).resolves.toBeTruthy();
    // Postgres' own output is not relayed line by line.
    expect(logs.some((l) => l.includes("database system is ready"))).toBe(false);

    // A lock file left by a cluster that did not stop, whose pid now belongs to another
    // program (after a reboot or a container restart), must not block the start.
    await fs.writeFile(path.join(dataDir, "postmaster.pid"), `${process.pid}\n${dataDir}\n0\n${port}\n`);

    // Reuses the initialised cluster (no second initdb) and finds the data again.
    const logs2: string[] = [];
    const second = await openLedger({ dataDir, log: (m) => logs2.push(m) });
    try {
      expect(logs2.some((l) => l.includes("initialising"))).toBe(false);
      expect(await second.ready()).toEqual({ ok: true });
      expect((await second.balances.get(balance.id))?.balanceCents).toBe(42n);
    } finally {
      await second.close();
    }
  });
});

describe("a data folder that is there before the first start", () => {
  it("is initialised in place, also through a symlink (as a Docker volume's mount point, it cannot be replaced)", async () => {
    const target = path.join(dir, "volume");
    await fs.mkdir(target);
    const dataDir = path.join(dir, "linked");
    await fs.symlink(target, dataDir);
    const ledger = await openLedger({ dataDir });
    try {
      expect(await ledger.ready()).toEqual({ ok: true });
    } finally {
      await ledger.close();
    }
    expect((await fs.lstat(dataDir)).isSymbolicLink()).toBe(true);
    await expect(fs.stat(path.join(target, "PG_VERSION"))).resolves.toBeTruthy();
    await expect(fs.stat(path.join(target, "ledger-superuser-password"))).resolves.toBeTruthy();
  });
});
