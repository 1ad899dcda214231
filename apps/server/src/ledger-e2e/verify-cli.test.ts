import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApi, type Api, type Auth } from "../testing/protocols.js";
import { HTTP_RULES } from "../testing/routes.js";
import { expectOk } from "../testing/expect.js";
import { inProcessDeployment, runVerify, type Deployment } from "./deployment.js";
import { CLI_JS, childEnv, runNode } from "../testing/process.js";

// `cli.js verify` must not only pass on a good ledger (concurrency.test.ts runs it after the
// races) but fail, by name, on a bad one: here a database of its own is corrupted by hand.

describe("cli.js verify on a corrupted ledger", () => {
  let d: Deployment;
  let api: Api;
  let service: Auth;
  const ids: Record<"tampered" | "gapped" | "clean", string> = { tampered: "", gapped: "", clean: "" };

  beforeAll(async () => {
    d = await inProcessDeployment();
    api = createApi(d.ports[0]!, HTTP_RULES);
    service = { bearer: d.serviceToken };
    for (const name of Object.keys(ids) as Array<keyof typeof ids>) {
      const created = expectOk(await api.call("rest", "CreateBalance", { user_id: "auditee", balance_cents: 300, reference_code: name }, service));
      ids[name] = created.data.id;
      expectOk(await api.call("connect-json", "CreditBalance", { id: ids[name], amount_cents: 40 }, service));
      expectOk(await api.call("grpc", "DebitBalance", { id: ids[name], amount_cents: 15 }, service));
    }
  });

  afterAll(async () => {
    api?.close();
    await d?.close();
  });

  it("passes before the corruption", async () => {
    const r = await runVerify(d.databaseUrl);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("verified 3 balances, 0 with drift");
  });

  it("exits 1 and names each drifting balance, and only those", async () => {
    // The schema refuses both at commit (the chain constraints of the ledger's migrations), so
    // this session switches every trigger off while it corrupts (superuser only): as someone
    // bypassing the database's own checks would, which is what `verify` is for.
    await d.sql(`set session_replication_role = replica`);
    // A balance changed behind the ledger's back.
    await d.sql(`update account_balances set balance_cents = balance_cents + 1 where id = $1`, [ids.tampered]);
    // A history with a hole: a transaction inserted past the end, skipping a sequence number.
    // (user_id is written here: the trigger that copies it from the balance is off too.)
    await d.sql(
      `insert into account_transactions (id, account_balance_id, user_id, transaction_type, amount_cents, balance_before_cents,
              balance_after_cents, currency, description, status, metadata, created_at, sequence)
       select 'txn_FORGED0000000000000000000', id, user_id, 'credit', 5, balance_cents, balance_cents + 5, currency, 'forged',
              'completed', '{}'::jsonb, now(), last_sequence + 2
         from account_balances where id = $1`,
      [ids.gapped],
    );
    await d.sql(`reset session_replication_role`);

    const r = await runVerify(d.databaseUrl);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stdout).toMatch(new RegExp(`^DRIFT ${ids.tampered}: .+$`, "m"));
    expect(r.stdout).toMatch(new RegExp(`^DRIFT ${ids.gapped}: .+$`, "m"));
    expect(r.stdout).not.toContain(ids.clean);
    // An operator's tool still never prints SQL or a stack.
    expect(r.stdout + r.stderr).not.toMatch(/\bselect\b|\n\s+at /i);

    // The in-process API agrees with the CLI.
    const report = await d.inProcess!.app.ledger.integrity.verify();
    expect([...new Set(report.problems.map((p) => p.balanceId))].sort()).toEqual([ids.tampered, ids.gapped].sort());

    // The summary counts balances with drift (2 of 3), not problem lines: one balance can have several.
    expect(r.stdout, "summary line of cli.js verify").toContain("verified 3 balances, 2 with drift");
  });
});

describe("cli.js exit codes an operator's cron job can read", () => {
  it("verify that cannot reach its database exits 3, not 1 (drift)", async () => {
    const r = await runNode(CLI_JS, ["verify"], childEnv({ DATABASE_URL: "postgres://postgres@127.0.0.1:1/none" }), 60_000);
    expect(r.code, r.stderr).toBe(3);
    expect(r.stdout).not.toContain("verified");
  });

  it("verify on a database that does not exist exits 3 and says so in PostgreSQL's words", async () => {
    const d = await inProcessDeployment();
    try {
      const url = new URL(d.databaseUrl);
      url.pathname = `/verify_missing_${process.pid}`;
      const r = await runNode(CLI_JS, ["verify"], childEnv({ DATABASE_URL: url.toString() }), 60_000);
      expect(r.code, r.stderr).toBe(3);
      expect(r.stderr).toContain(`database "verify_missing_${process.pid}" does not exist`);
      expect(r.stderr).not.toContain("internal ledger error");
    } finally {
      await d.close();
    }
  });

  it("verify on a database without the ledger's schema exits 3 and creates nothing there", async () => {
    const d = await inProcessDeployment();
    const name = `verify_empty_${process.pid}_${Date.now()}`;
    try {
      await d.sql(`create database ${name}`);
      const url = new URL(d.databaseUrl);
      url.pathname = `/${name}`;
      const r = await runNode(CLI_JS, ["verify"], childEnv({ DATABASE_URL: url.toString(), MIGRATE_ON_START: "true" }), 60_000);
      expect(r.code, r.stderr).toBe(3);
      expect(r.stderr).toContain("the ledger's tables are missing in this database: run migrate first");
      const probe = new pg.Client({ connectionString: url.toString() });
      await probe.connect();
      try {
        const tables = await probe.query("select count(*)::int as n from information_schema.tables where table_schema = 'public'");
        expect(tables.rows).toEqual([{ n: 0 }]);
      } finally {
        await probe.end();
      }
    } finally {
      await d.sql(`drop database if exists ${name}`).catch(() => undefined);
      await d.close();
    }
  });

  it("a usage mistake exits 2 before the database is asked anything, even when it is down", { timeout: 120_000 }, async () => {
    const down = childEnv({ DATABASE_URL: "postgres://postgres@127.0.0.1:1/none" });
    const cases = [
      ["session", "mint", "--user-id", "u1", "--bogus"],
      ["session", "mint"],
      ["verify", "extra"],
      ["nonsense"],
      // A repeated option must not mint for the last one quietly; a TTL is whole seconds, 1 s to 10 years.
      ["session", "mint", "--user-id", "u1", "--user-id", "u2"],
      ["session", "mint", "--user-id", "u1", "--ttl-seconds", "99999999999999"],
      ["session", "mint", "--user-id", "u1", "--ttl-seconds", "315360001"],
      ["session", "mint", "--user-id", "u1", "--ttl-seconds", "1e3"],
      ["session", "mint", "--user-id", "u1", "--ttl-seconds", "0x10"],
      ["session", "mint", "--user-id", "u1", "--ttl-seconds", " 5"],
      ["session", "mint", "--user-id", "u1", "--ttl-seconds", "0"],
      // A role the comma-separated role lists could never name.
      ["session", "mint", "--user-id", "u1", "--user-type", "admin,x"],
    ];
    for (const args of cases) {
      const r = await runNode(CLI_JS, args, down, 60_000);
      expect(r.code, `${args.join(" ")}: ${r.stderr}`).toBe(2);
    }
  });

  it("session mint refuses a user id the contract could never address, and writes nothing", async () => {
    const d = await inProcessDeployment();
    try {
      for (const args of [["--user-id", "a b"], ["--user-id", "u1", "--user-type", "ad min"], ["--user-id", "x".repeat(129)]]) {
        const r = await runNode(CLI_JS, ["session", "mint", ...args], childEnv({ DATABASE_URL: d.databaseUrl }), 60_000);
        expect(r.code, r.stderr).toBe(2);
        expect(r.stdout).toBe("");
      }
      expect(await d.sql("select count(*)::int as n from sessions")).toEqual([{ n: 0 }]);
    } finally {
      await d.close();
    }
  });
});
