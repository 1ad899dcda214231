#!/usr/bin/env node
import { parseArgs } from "node:util";
import { openLedger } from "@account-balance/ledger";
import { ConfigError, embeddedDataDir, loadConfig } from "./config.js";

const USAGE = `usage:
  account-balance migrate
  account-balance verify        checks every balance against its history; exits 1 on any drift,
                                3 when it could not check (configuration, database)
  account-balance session mint --user-id ID [--user-type customer] [--ttl-seconds 86400] [--email E] [--name N]
  account-balance session revoke SESSION_ID

Uses DATABASE_URL, or the embedded PostgreSQL in EMBEDDED_PG_DIR when it is unset.`;

async function main(argv: string[]): Promise<number> {
  const [command, sub, ...rest] = argv;
  const config = loadConfig(process.env);
  const ledger = await openLedger({
    databaseUrl: config.databaseUrl,
    dataDir: embeddedDataDir(config),
    migrate: command === "migrate" || config.migrateOnStart,
    log: (msg) => process.stderr.write(`${msg}\n`),
  });
  try {
    if (command === "migrate") {
      const ready = await ledger.ready();
      process.stdout.write(ready.ok ? "migrations applied\n" : `not ready: ${ready.detail ?? "unknown"}\n`);
      return ready.ok ? 0 : 1;
    }
    if (command === "verify") {
      const report = await ledger.integrity.verify();
      for (const p of report.problems) process.stdout.write(`DRIFT ${p.balanceId}: ${p.problem}\n`);
      const drifted = new Set(report.problems.map((p) => p.balanceId)).size;
      process.stdout.write(`verified ${report.balances} balances, ${drifted} with drift\n`);
      return report.problems.length === 0 ? 0 : 1;
    }
    if (command === "session" && sub === "mint") {
      const { values } = parseArgs({
        args: rest,
        options: {
          "user-id": { type: "string" },
          "user-type": { type: "string", default: "customer" },
          "ttl-seconds": { type: "string", default: "86400" },
          email: { type: "string" },
          name: { type: "string" },
        },
      });
      const ttlSeconds = Number(values["ttl-seconds"]);
      if (!values["user-id"] || !Number.isInteger(ttlSeconds) || ttlSeconds <= 0) {
        process.stderr.write(`${USAGE}\n`);
        return 2;
      }
      // The contract's user_id shape: a session for "a b" would create balances that no admin
      // route could ever address.
      if (!/^[!-~]{1,128}$/.test(values["user-id"]) || !/^[!-~]{1,64}$/.test(values["user-type"]!)) {
        process.stderr.write("account-balance: --user-id must be 1 to 128 printable ASCII characters without spaces, --user-type 1 to 64\n");
        return 2;
      }
      const minted = await ledger.sessions.mint({
        userId: values["user-id"],
        userType: values["user-type"]!,
        email: values.email,
        name: values.name,
        ttlSeconds,
      });
      // The only place a session id is ever printed in full: it is the command's output.
      process.stdout.write(`${JSON.stringify({ session_id: minted.sessionId, expires_at: minted.expiresAt.toISOString() })}\n`);
      return 0;
    }
    if (command === "session" && sub === "revoke" && rest[0]) {
      const revoked = await ledger.sessions.revoke(rest[0]);
      process.stdout.write(revoked ? "revoked\n" : "no such session\n");
      return revoked ? 0 : 1;
    }
    process.stderr.write(`${USAGE}\n`);
    return 2;
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
