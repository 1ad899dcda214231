// Micro-benchmark of credits/debits straight against the ledger API (no server): the
// per-movement path (batching off) against group commit (batching on).
//
//   cd packages/ledger && pnpm run build && \
//   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres node scripts/bench-movements.mjs
//
// Env: BENCH_DATABASE_URL (else TEST_DATABASE_URL; a database is created and dropped on that
// server), BENCH_SECONDS (per run, default 5), BENCH_CALLERS (default "32"; a comma list
// runs each), BENCH_BALANCES (default 10000), BENCH_POOL (pool size, default 10),
// BENCH_MODES (default "raw,off,on"). Not a test: numbers depend on the machine.
//
// Modes: "raw" is the bar to beat — plain pg, per debit one transaction of one
// UPDATE … RETURNING and one INSERT (no ORM, no checks beyond funds in the WHERE), over a
// pool of the same size; "off" the ledger one movement per transaction; "on" group commit.
import { randomBytes } from "node:crypto";
import pg from "pg";
import { openLedger } from "../dist/index.js";

const serverUrl = process.env.BENCH_DATABASE_URL ?? process.env.TEST_DATABASE_URL;
if (!serverUrl) {
  console.error("set BENCH_DATABASE_URL (or TEST_DATABASE_URL) to a PostgreSQL server URL");
  process.exit(2);
}
const seconds = Number(process.env.BENCH_SECONDS ?? 5);
const callerCounts = (process.env.BENCH_CALLERS ?? "32").split(",").map(Number);
const balanceCount = Number(process.env.BENCH_BALANCES ?? 10_000);
const poolMax = Number(process.env.BENCH_POOL ?? 10);
const modes = (process.env.BENCH_MODES ?? "raw,off,on").split(",");

const dbName = `ledger_bench_${process.pid}_${randomBytes(3).toString("hex")}`;
const withDb = (url, name) => {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
};
const admin = async (sql) => {
  const c = new pg.Client({ connectionString: serverUrl });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
};

let rawCount = 0;

/** The raw per-request SQL baseline, shaped like a ledger for the runner. */
function rawDebits(databaseUrl, max) {
  const pool = new pg.Pool({ connectionString: databaseUrl, max });
  return {
    movements: {
      async debit({ balanceId, amountCents }) {
        const c = await pool.connect();
        try {
          await c.query("begin");
          const r = await c.query(
            `update account_balances
                set balance_cents = balance_cents - $2, version = version + 1, last_sequence = last_sequence + 1,
                    updated_at = greatest(date_trunc('milliseconds', clock_timestamp()), updated_at)
              where id = $1 and status = 'active' and balance_cents >= $2
             returning balance_cents, last_sequence, updated_at, currency`,
            [balanceId, amountCents],
          );
          const row = r.rows[0];
          if (!row) throw new Error("refused");
          await c.query(
            `insert into account_transactions (id, account_balance_id, transaction_type, amount_cents, balance_before_cents,
                    balance_after_cents, currency, status, metadata, created_at, sequence)
             values ($1, $2, 'debit', $3, $4, $5, $6, 'completed', '{}', $7, $8)`,
            [`txn_raw_${rawCount++}`, balanceId, amountCents, BigInt(row.balance_cents) + amountCents, row.balance_cents, row.currency, row.updated_at, row.last_sequence],
          );
          await c.query("commit");
        } catch (err) {
          await c.query("rollback").catch(() => {});
          throw err;
        } finally {
          c.release();
        }
      },
    },
    close: () => pool.end(),
  };
}

await admin(`create database "${dbName}"`);
const url = withDb(serverUrl, dbName);
try {
  // Migrate once, then load balances with SQL: each with an opening adjustment, so the
  // ledger's invariant holds and integrity.verify() can check the end state.
  // One transaction: the schema checks at commit that each balance ends where its history does.
  const setup = await openLedger({ databaseUrl: url, batching: false });
  const big = 1_000_000_000_000n;
  const seed = new pg.Client({ connectionString: url });
  await seed.connect();
  await seed.query("begin");
  await seed.query(
    `insert into account_balances (id, user_id, balance_type, balance_cents, currency, status, metadata, version, last_sequence, created_at, updated_at)
     select 'bal_bench_' || lpad(i::text, 6, '0'), 'bench-' || (i % 100), 'general', ${big}, 'USD', 'active', '{}', 1, 1, now(), now()
       from generate_series(0, ${balanceCount}) as i`,
  );
  await seed.query(
    `insert into account_transactions (id, account_balance_id, transaction_type, amount_cents, balance_before_cents, balance_after_cents, currency, status, metadata, created_at, sequence)
     select 'txn_open_' || b.id, b.id, 'adjustment', b.balance_cents, 0, b.balance_cents, 'USD', 'completed', '{}', b.created_at, 1
       from account_balances b`,
  );
  await seed.query("commit");
  await seed.end();
  await setup.close();
  const hot = "bal_bench_000000";
  const spread = () => `bal_bench_${String(1 + Math.floor(Math.random() * balanceCount)).padStart(6, "0")}`;

  const rows = [];
  for (const callers of callerCounts) {
    for (const scenario of ["hot", "spread"]) {
      for (const mode of modes) {
        const sizes = [];
        const ledger =
          mode === "raw"
            ? rawDebits(url, poolMax)
            : await openLedger({
                databaseUrl: url,
                migrate: false,
                poolMax,
                batching: mode === "on",
                onBatch: (n) => sizes.push(n),
              });
        const pick = scenario === "hot" ? () => hot : spread;
        const run = async (ms, lat) => {
          const end = Date.now() + ms;
          let errors = 0;
          await Promise.all(
            Array.from({ length: callers }, async () => {
              while (Date.now() < end) {
                const t0 = performance.now();
                try {
                  await ledger.movements.debit({ balanceId: pick(), amountCents: 1n, allowNegative: false, metadata: {} });
                  lat?.push(performance.now() - t0);
                } catch (err) {
                  if (errors++ === 0) console.error(`${mode}/${scenario}: first error: ${err?.message ?? err}`);
                }
              }
            }),
          );
          return errors;
        };
        await run(1000); // warm-up: connections, plans, JIT
        sizes.length = 0;
        const lat = [];
        const cpu0 = process.cpuUsage();
        const t0 = performance.now();
        const errors = await run(seconds * 1000, lat);
        const elapsed = (performance.now() - t0) / 1000;
        const cpu = process.cpuUsage(cpu0);
        await ledger.close();
        lat.sort((a, b) => a - b);
        const q = (p) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))]?.toFixed(1) ?? "-";
        rows.push({
          scenario: scenario === "hot" ? "one hot balance" : `${balanceCount} balances`,
          callers,
          batching: mode,
          "tx/s": Math.round(lat.length / elapsed),
          "p50 ms": q(0.5),
          "p99 ms": q(0.99),
          errors,
          // This process's CPU per movement: what the ledger costs the server beside the database.
          "cpu µs/tx": lat.length ? Math.round((cpu.user + cpu.system) / lat.length) : "-",
          "avg batch": sizes.length ? (sizes.reduce((a, b) => a + b, 0) / sizes.length).toFixed(1) : "-",
        });
        console.log(JSON.stringify(rows.at(-1)));
      }
    }
  }
  console.table(rows);

  const check = await openLedger({ databaseUrl: url, migrate: false, batching: false });
  const report = await check.integrity.verify();
  await check.close();
  console.log(`integrity: ${report.balances} balances, ${report.problems.length} problem(s)`);
  if (report.problems.length > 0) process.exitCode = 1;
} finally {
  await admin(`drop database if exists "${dbName}" with (force)`);
}
