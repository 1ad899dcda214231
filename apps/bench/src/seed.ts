import { createHash, randomBytes } from "node:crypto";
import pg from "pg";
import { migrate } from "@account-balance/ledger";
import type { Sizes } from "./options.js";
import { balanceId, SET_PREFIX, type SetName } from "./ids.js";

export { balanceId } from "./ids.js";

/**
 * The benchmark's data, made with set-based SQL (generate_series) so that a million
 * transactions take seconds, and kept between runs: each set is checked by its counts and
 * only a missing or different set is (re)built.
 *
 * Every balance is consistent with its history (the ledger's invariant, which
 * `integrity.verify()` checks): sequence 1 is an `adjustment` from 0 to the opening amount,
 * and a history chain continues with 1-cent credits, each `balance_before_cents` equal to
 * the previous `balance_after_cents`, `last_sequence` = the newest sequence.
 */

export const TOTAL_USER = "bench_total_user";
/** Large enough that no debit scenario ever runs a balance dry. */
export const OPENING_CENTS = 1_000_000_000_000n;

export interface Seeded {
  ids: {
    /** The debit/mixed/get balances are balanceId("debit", 1..count). */
    debitCount: number;
    hot: string;
    big: string;
    small: string;
  };
  /** A local session of TOTAL_USER (the X-Session-ID value). */
  session: string;
  /** Sets (re)built by this call, with seconds taken. */
  built: Array<{ set: string; rows: number; seconds: number }>;
}

/** Creates the database when missing (on the same server, via the `postgres` database). */
export async function ensureDatabase(databaseUrl: string): Promise<void> {
  const url = new URL(databaseUrl);
  const name = decodeURIComponent(url.pathname.replace(/^\//, ""));
  if (!/^[A-Za-z0-9_]+$/.test(name)) throw new Error(`database name "${name}" must be letters, digits and _`);
  url.pathname = "/postgres";
  const admin = new pg.Client({ connectionString: url.toString() });
  await admin.connect();
  try {
    const found = await admin.query("select 1 from pg_database where datname = $1", [name]);
    if (found.rowCount === 0) await admin.query(`create database "${name}"`);
  } finally {
    await admin.end();
  }
}

interface SetSpec {
  set: SetName;
  /** Balances in the set. */
  balances: number;
  /** Transactions per balance (1 = the opening adjustment only). */
  history: number;
  /** Owner of balance i. */
  user: string;
}

export async function seed(databaseUrl: string, sizes: Sizes, log: (msg: string) => void): Promise<Seeded> {
  await ensureDatabase(databaseUrl);
  await migrate(databaseUrl);
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  const built: Seeded["built"] = [];
  try {
    const specs: SetSpec[] = [
      // Owners spread over 1,000 users so that no one user holds all of them.
      { set: "debit", balances: sizes.balances, history: 1, user: "'bench_u' || (i % 1000)" },
      { set: "hot", balances: 1, history: 1, user: "'bench_hot'" },
      { set: "big", balances: 1, history: sizes.bigHistory, user: "'bench_history'" },
      { set: "small", balances: 1, history: sizes.smallHistory, user: "'bench_history'" },
      { set: "user", balances: sizes.userBalances, history: 1, user: `'${TOTAL_USER}'` },
    ];
    for (const spec of specs) {
      if (await isSeeded(client, spec)) continue;
      const started = Date.now();
      log(`seeding ${spec.set}: ${spec.balances} balance(s) x ${spec.history} transaction(s)`);
      await build(client, spec);
      built.push({ set: spec.set, rows: spec.balances * spec.history, seconds: (Date.now() - started) / 1000 });
    }
    const session = await mintSession(client, TOTAL_USER);
    return {
      ids: { debitCount: sizes.balances, hot: balanceId("hot", 1), big: balanceId("big", 1), small: balanceId("small", 1) },
      session,
      built,
    };
  } finally {
    await client.end();
  }
}

/** Balance count and, for history sets, the chain length of balance 1 (movements only add to debit sets). */
async function isSeeded(client: pg.Client, spec: SetSpec): Promise<boolean> {
  const like = `bal\\_${SET_PREFIX[spec.set]}%`;
  const r = await client.query<{ n: string; seq: string | null }>(
    `select count(*) as n, max(last_sequence) filter (where id = $2) as seq from account_balances where id like $1`,
    [like, balanceId(spec.set, 1)],
  );
  const n = Number(r.rows[0]?.n ?? 0);
  const seq = Number(r.rows[0]?.seq ?? 0);
  if (n !== spec.balances) return false;
  return spec.history === 1 ? seq >= 1 : seq === spec.history;
}

async function build(client: pg.Client, spec: SetSpec): Promise<void> {
  const prefix = SET_PREFIX[spec.set];
  const id = (i: string) => `'bal_${prefix}' || lpad((${i})::text, 20, '0')`;
  const txn = (i: string, s: string) => `'txn_${prefix}' || lpad((${i})::text, 10, '0') || lpad((${s})::text, 10, '0')`;
  const opening = OPENING_CENTS.toString();
  const last = spec.history; // newest sequence
  await client.query("begin");
  try {
    // Triggers off for this transaction only: the rows below are written consistent by
    // construction (user_id set here, foreign keys hold), and an incomplete earlier set may be
    // cleared (history is otherwise append-only). Needs a superuser, as on a bench database.
    await client.query("set local session_replication_role = replica");
    await client.query(`delete from account_transactions where account_balance_id like $1`, [`bal\\_${prefix}%`]);
    await client.query(`delete from account_balances where id like $1`, [`bal\\_${prefix}%`]);
    // History starts an hour ago, 1 ms apart, so new movements (now) sort after it.
    await client.query(`
      insert into account_balances (id, user_id, balance_type, balance_cents, currency, status, metadata,
                                    version, created_at, updated_at, last_sequence)
      select ${id("i")}, ${spec.user}, 'general', ${opening} + ${last - 1}, 'USD', 'active', '{}'::jsonb,
             ${last}, now() - interval '1 hour', now() - interval '1 hour' + ${last} * interval '1 millisecond', ${last}
        from generate_series(1, ${spec.balances}) as i`);
    await client.query(`
      insert into account_transactions (id, account_balance_id, user_id, transaction_type, amount_cents,
                                        balance_before_cents, balance_after_cents, currency, status, metadata,
                                        created_at, sequence)
      select ${txn("i", "s")}, ${id("i")}, ${spec.user},
             case when s = 1 then 'adjustment' else 'credit' end,
             case when s = 1 then ${opening} else 1 end,
             case when s = 1 then 0 else ${opening} + s - 2 end,
             ${opening} + s - 1,
             'USD', 'completed', '{}'::jsonb,
             now() - interval '1 hour' + s * interval '1 millisecond', s
        from generate_series(1, ${spec.balances}) as i, generate_series(1, ${last}) as s`);
    await client.query("commit");
  } catch (err) {
    await client.query("rollback").catch(() => undefined);
    throw err;
  }
  // As autovacuum would leave an old history: statistics and the visibility map (index-only scans).
  await client.query("vacuum (analyze) account_balances");
  await client.query("vacuum (analyze) account_transactions");
}

/** A local session as the server's `session mint` makes it: only the token's sha256 is stored. */
async function mintSession(client: pg.Client, userId: string): Promise<string> {
  const token = randomBytes(32).toString("base64url");
  const id = createHash("sha256").update(token, "utf8").digest("hex");
  await client.query(
    `insert into sessions (id, user_id, user_type, created_at, expires_at) values ($1, $2, 'customer', now(), now() + interval '1 day')`,
    [id, userId],
  );
  return token;
}
