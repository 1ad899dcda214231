import type pg from "pg";
import type { Op, WorkloadBalance } from "./workload.js";

/**
 * After the run: the ledger, read with SQL, against what the clients were told. Every list
 * here must be empty for the run to pass.
 */
export interface Audit {
  acked: number;
  refused: number;
  /** Acknowledged, but their transaction is not in the ledger. */
  lost: string[];
  /** More than one transaction for one operation (idempotency key). */
  duplicated: string[];
  /** A transaction for an operation whose final answer was a refusal (or that nobody sent). */
  phantom: string[];
  /** The stored transaction differs from the acknowledged request (balance, kind, amount). */
  mismatched: string[];
  /** balance_cents != opening + Σ acknowledged credits − Σ acknowledged debits, or extra rows. */
  balanceDrift: string[];
  /** The idempotency key row of an acknowledged operation is missing, not done, or names another transaction; or a refused one kept a row. */
  keyRows: string[];
  /** Transactions leaving a balance below zero (no debit here allows it). */
  overdrafts: number;
  /** One key answered with two different transactions. */
  conflicts: string[];
}

type Sql = <R extends pg.QueryResultRow>(query: string, params?: unknown[]) => Promise<R[]>;

export async function auditLedger(sql: Sql, ops: readonly Op[], balances: readonly WorkloadBalance[]): Promise<Audit> {
  const acked = ops.filter((o) => o.outcome === "acked");
  const refused = ops.filter((o) => o.outcome === "refused");
  const byKey = new Map(ops.map((o) => [o.key, o]));
  const balanceIds = balances.map((b) => b.id);

  const txns = await sql<{ id: string; account_balance_id: string; transaction_type: string; amount_cents: string; op: string }>(
    `select id, account_balance_id, transaction_type, amount_cents, metadata->>'op' as op
       from account_transactions where account_balance_id = any($1::text[]) and metadata ? 'op'`,
    [balanceIds],
  );
  const rowsByKey = new Map<string, typeof txns>();
  for (const t of txns) rowsByKey.set(t.op, [...(rowsByKey.get(t.op) ?? []), t]);

  const lost: string[] = [];
  const duplicated: string[] = [];
  const mismatched: string[] = [];
  const phantom: string[] = [];
  for (const op of acked) {
    const rows = rowsByKey.get(op.key) ?? [];
    if (rows.length > 1) duplicated.push(`${op.key}: ${rows.map((r) => r.id).join(", ")}`);
    const row = rows.find((r) => r.id === op.txnId);
    if (!row) {
      lost.push(`${op.key} (${op.kind} ${op.amountCents} on ${op.balanceId}, acknowledged as ${op.txnId})`);
      continue;
    }
    if (row.account_balance_id !== op.balanceId || row.transaction_type !== op.kind || row.amount_cents !== String(op.amountCents)) {
      mismatched.push(`${op.key}: stored ${row.transaction_type} ${row.amount_cents} on ${row.account_balance_id}`);
    }
  }
  for (const [key, rows] of rowsByKey) {
    const op = byKey.get(key);
    if (!op || op.outcome !== "acked") phantom.push(`${key} (${op ? op.outcome : "never sent"}): ${rows.map((r) => r.id).join(", ")}`);
  }

  const expected = new Map(balances.map((b) => [b.id, { cents: BigInt(b.openingCents), rows: b.openingCents > 0 ? 1 : 0 }]));
  for (const op of acked) {
    const e = expected.get(op.balanceId)!;
    e.cents += op.kind === "credit" ? BigInt(op.amountCents) : -BigInt(op.amountCents);
    e.rows += 1;
  }
  const stored = await sql<{ id: string; balance_cents: string; rows: string }>(
    `select b.id, b.balance_cents, (select count(*) from account_transactions t where t.account_balance_id = b.id) as rows
       from account_balances b where b.id = any($1::text[])`,
    [balanceIds],
  );
  const balanceDrift: string[] = [];
  for (const b of stored) {
    const e = expected.get(b.id)!;
    if (BigInt(b.balance_cents) !== e.cents || Number(b.rows) !== e.rows) {
      balanceDrift.push(`${b.id}: stored ${b.balance_cents} in ${b.rows} rows, acknowledged ${e.cents} in ${e.rows}`);
    }
  }

  const keys = await sql<{ key: string; status: string; txn: string | null }>(
    `select key, status, response->'transaction'->>'id' as txn from idempotency_keys
      where scope = 'service' and key = any($1::text[])`,
    [ops.map((o) => o.key)],
  );
  const keyRow = new Map(keys.map((k) => [k.key, k]));
  const keyRows: string[] = [];
  for (const op of acked) {
    const k = keyRow.get(op.key);
    if (!k || k.status !== "done" || k.txn !== op.txnId) keyRows.push(`${op.key}: ${k ? `${k.status} ${k.txn}` : "no key row"}, acknowledged ${op.txnId}`);
  }
  for (const op of refused) if (keyRow.has(op.key)) keyRows.push(`${op.key}: refused (${op.refusal}) but its key was stored`);

  const [overdraft] = await sql<{ n: string }>(
    `select count(*) as n from account_transactions where account_balance_id = any($1::text[]) and balance_after_cents < 0`,
    [balanceIds],
  );

  return {
    acked: acked.length,
    refused: refused.length,
    lost,
    duplicated,
    phantom,
    mismatched,
    balanceDrift,
    keyRows,
    overdrafts: Number(overdraft?.n ?? 0),
    conflicts: ops.flatMap((o) => o.conflicts.map((c) => `${o.key}: ${c}`)),
  };
}
