import { openFailure, sqlState } from "./db-errors.js";
import { LedgerError } from "./errors.js";
import { inSnapshot, runSql, type LedgerOrm } from "./orm.js";

export interface IntegrityProblem {
  balanceId: string;
  problem: string;
}

export interface IntegrityReport {
  /** Balances checked. */
  balances: number;
  /** Empty when every balance's history is whole. */
  problems: IntegrityProblem[];
}

export interface Integrity {
  /**
   * Checks, in SQL over one snapshot, the invariant of spec section 6 for every balance:
   * its transactions in sequence order are numbered 1…n without gaps, each starts where the
   * previous ended (the first at 0), are in the balance's currency, and the last ends at
   * balance_cents (no transactions: balance_cents is 0); last_sequence is n.
   */
  verify(): Promise<IntegrityReport>;
}

interface Finding {
  id: string;
  balance_cents: string;
  last_sequence: string;
  n: string | null;
  max_sequence: string | null;
  first_gap: string | null;
  first_break: string | null;
  last_after: string | null;
  other_currency: string | null;
}

export function createIntegrity(orm: LedgerOrm): Integrity {
  async function verify(): Promise<IntegrityReport> {
    try {
      return await check();
    } catch (err) {
      throw checkFailure(err);
    }
  }

  async function check(): Promise<IntegrityReport> {
    return inSnapshot(orm, async (em) => {
      const [count] = (await runSql(em, `select count(*)::text as n from account_balances`)) as Array<{ n: string }>;
      const findings = (await runSql(
        em,
        `with t as (
           select t.account_balance_id, t.sequence, t.balance_before_cents, t.balance_after_cents, t.currency,
                  row_number() over w as position,
                  lag(t.balance_after_cents) over w as previous_after
             from account_transactions t
           window w as (partition by t.account_balance_id order by t.sequence)
         ), chain as (
           select t.account_balance_id,
                  count(*) as n,
                  max(t.sequence) as max_sequence,
                  min(t.sequence) filter (where t.sequence <> t.position) as first_gap,
                  min(t.sequence) filter (where t.balance_before_cents <> coalesce(t.previous_after, 0)) as first_break,
                  (array_agg(t.balance_after_cents order by t.sequence desc))[1] as last_after,
                  bool_or(t.currency <> b.currency) as other_currency
             from t join account_balances b on b.id = t.account_balance_id
            group by t.account_balance_id
         )
         select b.id, b.balance_cents::text, b.last_sequence::text, c.n::text, c.max_sequence::text,
                c.first_gap::text, c.first_break::text, c.last_after::text, c.other_currency::text
           from account_balances b
           left join chain c on c.account_balance_id = b.id
          where c.first_gap is not null
             or c.first_break is not null
             or coalesce(c.other_currency, false)
             or coalesce(c.last_after, 0) <> b.balance_cents
             or coalesce(c.max_sequence, 0) <> b.last_sequence
          order by b.id`,
      )) as Finding[];

      const problems: IntegrityProblem[] = [];
      for (const f of findings) {
        const add = (problem: string) => problems.push({ balanceId: f.id, problem });
        if (f.first_gap !== null) add(`sequence is not 1..n without gaps (first wrong at ${f.first_gap})`);
        if (f.first_break !== null) {
          add(`chain broken at sequence ${f.first_break}: balance_before_cents is not the previous balance_after_cents`);
        }
        if (f.other_currency === "true") add("a transaction is in another currency than its balance");
        const lastAfter = f.last_after ?? "0";
        if (lastAfter !== f.balance_cents) {
          add(`balance_cents ${f.balance_cents} is not the last balance_after_cents ${lastAfter}`);
        }
        const maxSeq = f.max_sequence ?? "0";
        if (maxSeq !== f.last_sequence) add(`last_sequence ${f.last_sequence} is not the newest sequence ${maxSeq}`);
      }
      return { balances: Number(count?.n ?? 0), problems };
    });
  }

  return { verify };
}

/**
 * Why a check could not run, for the operator who ran it: a wrong database name or role in
 * PostgreSQL's own words (as at open), a database without the ledger's tables named as such,
 * rather than "internal ledger error".
 */
function checkFailure(err: unknown): LedgerError {
  const cause = err instanceof LedgerError ? (err as { cause?: unknown }).cause : err;
  if (cause === undefined) return err as LedgerError;
  if (sqlState(cause) === "42P01") return new LedgerError("UNAVAILABLE", "the ledger's tables are missing in this database: run migrate first");
  return openFailure(cause);
}
