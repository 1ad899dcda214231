#!/usr/bin/env node
import { parseArgs } from "node:util";
import { ConfigError, embeddedDataDir, loadConfig } from "./config.js";
import { ROLE_SHAPE, USER_ID_SHAPE } from "./auth/caller.js";

const USAGE = `usage:
  account-balance migrate
  account-balance verify        checks every balance against its history; exits 1 on any drift,
                                3 when it could not check (configuration, database)
  account-balance session mint --user-id ID [--user-type customer] [--ttl-seconds 86400] [--email E] [--name N]
                                ttl from 1 s to 10 years; like the server, it migrates first
                                unless MIGRATE_ON_START=false
  account-balance session revoke SESSION_ID

Uses DATABASE_URL, or the embedded PostgreSQL in EMBEDDED_PG_DIR when it is unset.`;

const MAX_TTL_SECONDS = 315_360_000;

type Command =
  | { kind: "migrate" }
  | { kind: "verify" }
  | { kind: "mint"; userId: string; userType: string; ttlSeconds: number; email?: string; name?: string }
  | { kind: "revoke"; sessionId: string };

/** The command the arguments ask for, or why they cannot be run (a usage error: exit 2). */
function parseCommand(argv: string[]): Command | string {
  const [command, sub, ...rest] = argv;
  if (command === "migrate" && sub === undefined) return { kind: "migrate" };
  if (command === "verify" && sub === undefined) return { kind: "verify" };
  if (command === "session" && sub === "revoke" && rest.length === 1 && rest[0]) return { kind: "revoke", sessionId: rest[0] };
  if (command !== "session" || sub !== "mint") return USAGE;
  let values;
  let tokens;
  try {
    ({ values, tokens } = parseArgs({
      args: rest,
      tokens: true,
      options: {
        "user-id": { type: "string" },
        "user-type": { type: "string", default: "customer" },
        "ttl-seconds": { type: "string", default: "86400" },
        email: { type: "string" },
        name: { type: "string" },
      },
    }));
  } catch (err) {
    return `${err instanceof Error ? err.message : String(err)}\n${USAGE}`;
  }
  // parseArgs keeps the last of a repeated option: "--user-id u1 --user-id u2" must not mint for u2 quietly.
  const given = tokens.filter((t) => t.kind === "option").map((t) => t.name);
  const twice = given.find((name, i) => given.indexOf(name) !== i);
  if (twice !== undefined) return `--${twice} is given twice\n${USAGE}`;
  const ttlText = values["ttl-seconds"]!;
  const ttlSeconds = /^[0-9]{1,9}$/.test(ttlText) ? Number(ttlText) : NaN;
  if (!values["user-id"]) return USAGE;
  if (!(ttlSeconds >= 1 && ttlSeconds <= MAX_TTL_SECONDS)) return `--ttl-seconds must be a whole number of seconds from 1 to ${MAX_TTL_SECONDS} (10 years)`;
  // The contract's user_id shape: a session for "a b" would create balances that no admin
  // route could ever address. A role with a comma could never be named in the comma-separated
  // role lists (ACCOUNT_BALANCE_ADMIN_ROLES, _ALLOWED_ROLES).
  if (!USER_ID_SHAPE.test(values["user-id"]) || !ROLE_SHAPE.test(values["user-type"]!) || values["user-type"]!.includes(",")) {
    return "--user-id must be 1 to 128 printable ASCII characters without spaces, --user-type 1 to 64 without commas";
  }
  return { kind: "mint", userId: values["user-id"], userType: values["user-type"]!, ttlSeconds, email: values.email, name: values.name };
}

async function main(argv: string[]): Promise<number> {
  // Arguments first: a usage error is exit 2 whether or not the database is up.
  const command = parseCommand(argv);
  if (typeof command === "string") {
    process.stderr.write(`account-balance: ${command}\n`);
    return 2;
  }
  const config = loadConfig(process.env);
  // Loaded only now (the ORM and its drivers take seconds to load on a small host): a usage
  // or configuration mistake is answered at once.
  const { openLedger } = await import("@account-balance/ledger");
  const ledger = await openLedger({
    databaseUrl: config.databaseUrl,
    dataDir: embeddedDataDir(config),
    // A check changes nothing, the schema included: verify never migrates.
    migrate: command.kind === "migrate" || (command.kind !== "verify" && config.migrateOnStart),
    log: (msg) => process.stderr.write(`${msg}\n`),
  });
  try {
    switch (command.kind) {
      case "migrate": {
        const ready = await ledger.ready();
        process.stdout.write(ready.ok ? "migrations applied\n" : `not ready: ${ready.detail ?? "unknown"}\n`);
        return ready.ok ? 0 : 1;
      }
      case "verify": {
        const report = await ledger.integrity.verify();
        for (const p of report.problems) process.stdout.write(`DRIFT ${p.balanceId}: ${p.problem}\n`);
        const drifted = new Set(report.problems.map((p) => p.balanceId)).size;
        process.stdout.write(`verified ${report.balances} balances, ${drifted} with drift\n`);
        return report.problems.length === 0 ? 0 : 1;
      }
      case "mint": {
        const minted = await ledger.sessions.mint({
          userId: command.userId,
          userType: command.userType,
          email: command.email,
          name: command.name,
          ttlSeconds: command.ttlSeconds,
        });
        // The only place a session id is ever printed in full: it is the command's output.
        process.stdout.write(`${JSON.stringify({ session_id: minted.sessionId, expires_at: minted.expiresAt.toISOString() })}\n`);
        return 0;
      }
      case "revoke": {
        const revoked = await ledger.sessions.revoke(command.sessionId);
        process.stdout.write(revoked ? "revoked\n" : "no such session\n");
        return revoked ? 0 : 1;
      }
    }
  } finally {
    await ledger.close();
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    const message = err instanceof ConfigError ? `configuration error: ${err.message}` : err instanceof Error ? err.message : String(err);
    process.stderr.write(`account-balance: ${message}\n`);
    // Not 1: for verify that means drift, and a cron job must tell "could not check" apart.
    process.exit(3);
  },
);
