// EXPLAIN (ANALYZE, BUFFERS) of every list and aggregate statement the ledger runs, on a table
// of 1,100,000 transactions: the numbers behind docs/query-plans.md ("1,000,000 transactions").
//
//   cd packages/ledger && pnpm run build && \
//   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres node scripts/explain-1m.mjs
//
// Creates a scratch database `explain_1m_<random>` on that server (default the URL above),
// applies the migrations, seeds in ONE database transaction (the chain constraints check every
// row at commit): 1,000 balances of 100 users with 1,000 transactions each, one balance with
// 100,000 (`bal_big` of `user-big`), and 99,000 balances without money of 10,000 more users.
// Then VACUUM ANALYZE (what autovacuum does to a table that grew), and for each statement —
// the SQL comes from the same builders reads.ts, balance-filter.ts and expiry.ts execute —
// prints the plan and fails (exit 1) on a
// `Seq Scan` of account_transactions or account_balances, or a plan without the expected
// index. The database is dropped at the end. Not a test: the timings depend on the machine.
import { randomBytes } from "node:crypto";
import pg from "pg";
import { migrate, openLedger } from "../dist/index.js";
import { DUE_BALANCES_SQL } from "../dist/expiry.js";
import { balanceListQueries } from "../dist/balance-filter.js";
import { expiringQueries, statisticsQuery, totalsQuery, transactionQueries } from "../dist/reads.js";

const serverUrl = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";
const dbName = `explain_1m_${randomBytes(4).toString("hex")}`;
const withDb = (url, name) => {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
};
async function onServer(sql) {
  const c = new pg.Client({ connectionString: serverUrl });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

const FUNDED = 1_000; // balances with 1,000 transactions each
const PER_FUNDED = 1_000;
const BIG = 100_000; // transactions of bal_big
const EMPTY = 99_000; // balances without transactions

// Transaction s of a balance: s = 1 the opening adjustment of 100, then credits of 100 and
// every 5th a debit of 50. After s: 100·s − 150·⌊s/5⌋ (closed form: no window over 1.1M rows).
const AFTER = (s) => `(100 * ${s} - 150 * (${s} / 5))`;

await onServer(`create database "${dbName}"`);
const url = withDb(serverUrl, dbName);
let failed = false;
try {
  await migrate(url);
  const db = new pg.Client({ connectionString: url });
  await db.connect();
  try {
    const t0 = performance.now();
    await db.query("begin");
    await db.query(
      `insert into account_balances (id, user_id, balance_type, balance_cents, currency, status, expires_at, version,
              last_sequence, created_at, updated_at)
       select 'bal_' || lpad(g::text, 6, '0'), 'user-' || (g % 100),
              (array['general', 'credits', 'promotional', 'refund'])[1 + g % 4],
              ${AFTER(PER_FUNDED)}, case when g % 2 = 0 then 'USD' else 'EUR' end,
              case when g % 17 = 0 then 'suspended' else 'active' end,
              case when g % 10 = 0 then now() + (g % 60) * interval '1 day' - interval '12 hours' end,
              ${PER_FUNDED + 1}, ${PER_FUNDED}, now() - interval '366 days', now()
         from generate_series(1, ${FUNDED}) g
       union all
       select 'bal_big', 'user-big', 'general', ${AFTER(BIG)}, 'USD', 'active', null, ${BIG + 1}, ${BIG},
              now() - interval '366 days', now()
       union all
       select 'bal_e' || lpad(g::text, 6, '0'), 'user-e' || (g % 10000),
              (array['general', 'credits', 'promotional', 'refund'])[1 + g % 4],
              0, case when g % 3 = 0 then 'EUR' else 'USD' end, 'active',
              case when g % 7 = 0 then now() + (g % 400) * interval '1 day' - interval '200 days' end,
              1, 0, now() - interval '300 days' + g * interval '1 minute', now()
         from generate_series(1, ${EMPTY}) g`,
    );
    const seeded = await db.query(
      `insert into account_transactions (id, account_balance_id, transaction_type, amount_cents, balance_before_cents,
              balance_after_cents, currency, status, metadata, created_at, sequence)
       select 'txn_' || b.id || '_' || s, b.id,
              case when s = 1 then 'adjustment' when s % 5 = 0 then 'debit' else 'credit' end,
              case when s % 5 = 0 then 50 else 100 end,
              ${AFTER("s")} - case when s % 5 = 0 then -50 else 100 end,
              ${AFTER("s")}, b.currency, 'completed', '{}'::jsonb,
              b.created_at + s * case when b.id = 'bal_big' then interval '5 minutes' else interval '8 hours' end,
              s
         from account_balances b
        cross join lateral generate_series(1, b.last_sequence) s
        where b.last_sequence > 0
        order by b.id, s`,
    );
    const t1 = performance.now();
    await db.query("commit");
    const t2 = performance.now();
    const counts = (
      await db.query(
        `select (select count(*) from account_balances)::int as balances, (select count(*) from account_transactions)::int as transactions`,
      )
    ).rows[0];
    console.log(
      `seeded ${counts.balances} balances and ${counts.transactions} transactions (${seeded.rowCount} in one INSERT … SELECT): ` +
        `statements ${((t1 - t0) / 1000).toFixed(1)} s, COMMIT with the deferred chain checks ${((t2 - t1) / 1000).toFixed(1)} s`,
    );
    const t3 = performance.now();
    await db.query("vacuum analyze account_balances");
    await db.query("vacuum analyze account_transactions");
    console.log(`vacuum analyze: ${((performance.now() - t3) / 1000).toFixed(1)} s`);
    const sizes = (
      await db.query(
        `select relname, pg_size_pretty(pg_total_relation_size(oid)) as size from pg_class
          where relname in ('account_balances', 'account_transactions') order by relname`,
      )
    ).rows;
    console.log(`sizes (with indexes): ${sizes.map((r) => `${r.relname} ${r.size}`).join(", ")}`);
    console.log(`server: ${(await db.query("select version() as v")).rows[0].v}\n`);
  } finally {
    await db.end();
  }

  // The statements, through the ledger's own connection (knex `?` bindings), as
  // src/query-plans.test.ts asks for them.
  const ledger = await openLedger({ databaseUrl: url, migrate: false, batching: false });
  try {
    const balanceList = balanceListQueries({ userId: "user-e42" }, { limit: 50, offset: 0 });

    const page = { limit: 50, offset: 0 };
    const window = { from: new Date(Date.now() - 20 * 86_400_000), to: new Date() };
    const bal = transactionQueries({ balanceId: "bal_000123" }, {}, page);
    const balF = transactionQueries({ balanceId: "bal_000123" }, { transactionType: "debit", ...window }, page);
    const big = transactionQueries({ balanceId: "bal_big" }, {}, page);
    const bigDeep = transactionQueries({ balanceId: "bal_big" }, {}, { limit: 50, offset: 50_000 });
    const bigF = transactionQueries({ balanceId: "bal_big" }, { transactionType: "debit", ...window }, page);
    const usr = transactionQueries({ userId: "user-23" }, {}, page);
    const usrF = transactionQueries({ userId: "user-23", currency: "EUR" }, { transactionType: "credit", ...window }, page);
    const usrBig = transactionQueries({ userId: "user-big" }, {}, page);
    const exp = expiringQueries({ withinDays: 7 }, page);
    const expF = expiringQueries({ withinDays: 30, currency: "USD", balanceType: "credits" }, page);
    // One balance's rows are found through either index keyed on account_balance_id: the
    // history index (ordered by time) or, for a count or a whole-history aggregate, the
    // narrower unique (account_balance_id, sequence) index, which the planner prefers there.
    const H = ["account_transactions_history_idx", "account_transactions_sequence_unique"];
    const UH = "account_transactions_user_history_idx";
    const UC = "account_balances_user_created_idx";
    const EX = "account_balances_expiring_idx";
    const list = [
      ["balance transactions (1,000 rows): page", bal.items, H],
      ["balance transactions (1,000 rows): total", bal.total, H],
      ["balance transactions, type + 20-day window: page", balF.items, H],
      ["balance transactions, type + 20-day window: total", balF.total, H],
      ["bal_big transactions (100,000 rows): page 1", big.items, H],
      ["bal_big transactions: page 1,001 (offset 50,000)", bigDeep.items, H],
      ["bal_big transactions: total", big.total, H],
      ["bal_big transactions, type + 20-day window: page", bigF.items, H],
      ["bal_big transactions, type + 20-day window: total", bigF.total, H],
      ["user transactions (10,000 rows over 10 balances): page", usr.items, UH],
      ["user transactions: total", usr.total, UH],
      ["user transactions, currency + type + window: page", usrF.items, UH],
      ["user transactions, currency + type + window: total", usrF.total, UH],
      ["user-big transactions (100,000 rows): page", usrBig.items, UH],
      ["user-big transactions: total", usrBig.total, UH],
      ["totals", totalsQuery({ userId: "user-23" }), UC],
      ["totals, by currency and status", totalsQuery({ userId: "user-23", currency: "USD", status: "active" }), UC],
      ["statistics (1,000 rows)", statisticsQuery("bal_000123", {}, undefined), H],
      ["statistics, bal_big (100,000 rows)", statisticsQuery("bal_big", {}, undefined), H],
      ["statistics, bal_big, 20-day window, owner", statisticsQuery("bal_big", window, "user-big"), H],
      ["expiring within 7 days: page", exp.items, EX],
      ["expiring within 7 days: total", exp.total, EX],
      ["expiring within 30 days, currency + type: page", expF.items, EX],
      ["sweeper: due balances", { sql: DUE_BALANCES_SQL, params: [100] }, EX],
      ["balances.list: page", balanceList.items, UC],
      ["balances.list: total", balanceList.total, UC],
    ];

    const summary = [];
    for (const [name, q, index] of list) {
      const em = ledger.orm.em.fork();
      const rows = await em.execute(`explain (analyze, buffers) ${q.sql}`, q.params);
      const text = rows.map((r) => r["QUERY PLAN"]).join("\n");
      const seq = /Seq Scan on account_(transactions|balances)/.test(text);
      const indexes = Array.isArray(index) ? index : [index];
      const usesIndex = indexes.some((i) => text.includes(i));
      const ms = /Execution Time: ([\d.]+) ms/.exec(text)?.[1];
      // The top node's buffers (it includes its children's), not the planner's.
      const top = /Buffers: shared ([^\n]*)/.exec(text.split(/\nPlanning/)[0])?.[1] ?? "";
      const count = (kind) => Number(new RegExp(`${kind}=(\\d+)`).exec(top)?.[1] ?? 0);
      const buffers = count("hit") + count("read");
      const ok = !seq && usesIndex;
      if (!ok) failed = true;
      const used = indexes.filter((i) => text.includes(i)).join(", ") || indexes.join(" or ");
      summary.push({ statement: name, index: used, ms, buffers, ok });
      console.log(`### ${name}${ok ? "" : seq ? "  <-- SEQ SCAN" : `  <-- ${indexes.join(" or ")} NOT USED`}\n\n\`\`\`\n${q.sql.replace(/\s+/g, " ").trim()}\n\n${text}\n\`\`\`\n`);
    }
    console.log("| statement | index used | execution ms | buffers | ok |\n|---|---|---|---|---|");
    for (const s of summary) console.log(`| ${s.statement} | \`${s.index}\` | ${s.ms} | ${s.buffers} | ${s.ok ? "yes" : "NO"} |`);
  } finally {
    await ledger.close();
  }
} finally {
  await onServer(`drop database if exists "${dbName}" with (force)`);
}
if (failed) {
  console.error("\nFAILED: a statement scans a whole table or does not use its index");
  process.exitCode = 1;
} else {
  console.log("\nno Seq Scan on account_transactions or account_balances; every statement on its index");
}
