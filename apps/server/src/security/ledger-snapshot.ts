import type { TestServer } from "../testing/server.js";

/**
 * What the ledger holds, to tell the writes a run made: balances (with their version, so an
 * update or close shows), transactions and idempotency keys.
 */
export interface LedgerSnapshot {
  balances: Map<string, string>;
  transactions: Set<string>;
  /** Opening adjustments (sequence 1, written with a balance created with money): their balance. */
  openings: Map<string, string>;
  idempotencyKeys: Set<string>;
}

export async function snapshot(server: TestServer): Promise<LedgerSnapshot> {
  const balances = await server.sql<{ id: string; version: string }>("select id, version::text as version from account_balances");
  const transactions = await server.sql<{ id: string; balance_id: string; opening: boolean }>(
    "select id, account_balance_id as balance_id, sequence = 1 and transaction_type = 'adjustment' as opening from account_transactions",
  );
  const keys = await server.sql<{ key: string }>("select key from idempotency_keys");
  return {
    balances: new Map(balances.map((r) => [r.id, r.version])),
    transactions: new Set(transactions.map((r) => r.id)),
    openings: new Map(transactions.filter((r) => r.opening).map((r) => [r.id, r.balance_id])),
    idempotencyKeys: new Set(keys.map((r) => r.key)),
  };
}

/**
 * What the accepted requests of a run may have written: the balance and transaction ids their
 * answers named, and the idempotency keys they carried. Anything else that changed in the
 * ledger was written by a request that was refused.
 */
export class AcceptedWrites {
  readonly balanceIds = new Set<string>();
  readonly transactionIds = new Set<string>();
  readonly idempotencyKeys = new Set<string>();
  count = 0;
  /** Mutating calls answered DEADLINE_EXCEEDED: each may or may not have written. */
  uncertain = 0;

  /** Records an accepted mutating call: every bal_/txn_ id in its answer, and the keys it sent. */
  record(answer: unknown, keys: Iterable<string | undefined>): void {
    this.count++;
    const walk = (v: unknown, depth: number): void => {
      if (depth > 6 || v === null || v === undefined) return;
      if (typeof v === "string") {
        if (v.startsWith("bal_")) this.balanceIds.add(v);
        else if (v.startsWith("txn_")) this.transactionIds.add(v);
      } else if (Array.isArray(v)) {
        for (const x of v) walk(x, depth + 1);
      } else if (typeof v === "object") {
        for (const x of Object.values(v as Record<string, unknown>)) walk(x, depth + 1);
      }
    };
    walk(answer, 0);
    for (const k of keys) if (k !== undefined && k !== "") this.idempotencyKeys.add(k);
  }
}

/** Rows that changed between two snapshots without an accepted request to account for them. */
export function unexplainedWrites(before: LedgerSnapshot, after: LedgerSnapshot, accepted: AcceptedWrites): string[] {
  const problems: string[] = [];
  for (const [id, version] of after.balances) {
    const was = before.balances.get(id);
    if (was === version) continue;
    if (!accepted.balanceIds.has(id)) problems.push(`balance ${id} ${was === undefined ? "created" : `changed (version ${was} -> ${version})`} by a refused request`);
  }
  for (const id of after.transactions) {
    if (before.transactions.has(id) || accepted.transactionIds.has(id)) continue;
    // CreateBalance answers with the balance only; the opening adjustment of a balance it
    // created with money is that accepted request's write too.
    const opened = after.openings.get(id);
    if (opened !== undefined && !before.balances.has(opened) && accepted.balanceIds.has(opened)) continue;
    problems.push(`transaction ${id} written by a refused request`);
  }
  for (const key of after.idempotencyKeys) {
    if (!before.idempotencyKeys.has(key) && !accepted.idempotencyKeys.has(key)) {
      problems.push(`idempotency key ${JSON.stringify(key.slice(0, 40))} stored for a refused request`);
    }
  }
  return problems;
}

/** New rows per table between two snapshots. */
export function rowsAdded(before: LedgerSnapshot, after: LedgerSnapshot): { balances: number; transactions: number; idempotencyKeys: number } {
  return {
    balances: after.balances.size - before.balances.size,
    transactions: after.transactions.size - before.transactions.size,
    idempotencyKeys: after.idempotencyKeys.size - before.idempotencyKeys.size,
  };
}
