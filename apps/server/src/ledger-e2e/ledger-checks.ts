import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { AccountBalanceService } from "@account-balance/proto/accountbalance/v1/account_balance_service_pb.js";
import { ErrorInfoSchema } from "@account-balance/proto/google/rpc/error_details_pb.js";
import type { Deployment } from "./deployment.js";

/** A transaction row as stored, money as bigint. */
export interface StoredTransaction {
  id: string;
  sequence: number;
  type: string;
  amount: bigint;
  before: bigint;
  after: bigint;
  createdAt: Date;
}

/** Every transaction of a balance in sequence order, straight from the table. */
export async function historyOf(d: Deployment, balanceId: string): Promise<StoredTransaction[]> {
  const rows = await d.sql<{ id: string; sequence: string; transaction_type: string; amount: string; before: string; after: string; created_at: Date }>(
    `select id, sequence::text, transaction_type, amount_cents::text as amount, balance_before_cents::text as before,
            balance_after_cents::text as after, created_at
       from account_transactions t where t.account_balance_id = $1 order by t.sequence`,
    [balanceId],
  );
  return rows.map((r) => ({
    id: r.id,
    sequence: Number(r.sequence),
    type: r.transaction_type,
    amount: BigInt(r.amount),
    before: BigInt(r.before),
    after: BigInt(r.after),
    createdAt: r.created_at,
  }));
}

export interface StoredBalance {
  id: string;
  cents: bigint;
  status: string;
  version: bigint;
  lastSequence: bigint;
  expiresAt: Date | null;
}

export async function storedBalance(d: Deployment, balanceId: string): Promise<StoredBalance> {
  const [row] = await d.sql<{ id: string; cents: string; status: string; version: string; last_sequence: string; expires_at: Date | null }>(
    `select id, balance_cents::text as cents, status, version::text, last_sequence::text, expires_at
       from account_balances where id = $1`,
    [balanceId],
  );
  if (!row) throw new Error(`balance ${balanceId} is not in the table`);
  return {
    id: row.id,
    cents: BigInt(row.cents),
    status: row.status,
    version: BigInt(row.version),
    lastSequence: BigInt(row.last_sequence),
    expiresAt: row.expires_at,
  };
}

/**
 * Spec section 6's invariant for one balance, read from the tables: sequences 1…n, each
 * transaction starts where the previous ended (the first at 0), amount = |after − before| with
 * the type's direction, and the last ends at balance_cents. Returns what is wrong (empty: whole).
 */
export function chainProblems(history: readonly StoredTransaction[], balance: StoredBalance): string[] {
  const problems: string[] = [];
  let previous = 0n;
  history.forEach((t, i) => {
    if (t.sequence !== i + 1) problems.push(`position ${i + 1} has sequence ${t.sequence}`);
    if (t.before !== previous) problems.push(`sequence ${t.sequence} starts at ${t.before}, previous ended at ${previous}`);
    if (t.amount <= 0n) problems.push(`sequence ${t.sequence} has amount ${t.amount}`);
    const delta = t.after - t.before;
    const expected = t.type === "credit" ? t.amount : t.type === "debit" || t.type === "expiration" ? -t.amount : delta;
    if (delta !== expected) problems.push(`sequence ${t.sequence} (${t.type} ${t.amount}) moves ${delta}`);
    previous = t.after;
  });
  if (previous !== balance.cents) problems.push(`history ends at ${previous}, balance_cents is ${balance.cents}`);
  if (BigInt(history.length) !== balance.lastSequence) problems.push(`last_sequence ${balance.lastSequence}, ${history.length} transactions`);
  return problems;
}

/** A generated Connect client over cleartext HTTP/2 (the h2c side of the shared port). */
export function connectH2(port: number): { client: Client<typeof AccountBalanceService>; close(): void } {
  const baseUrl = `http://127.0.0.1:${port}`;
  const sessionManager = new Http2SessionManager(baseUrl);
  const client = createClient(AccountBalanceService, createConnectTransport({ baseUrl, httpVersion: "2", sessionManager }));
  return { client, close: () => sessionManager.abort() };
}

/** Code, ErrorInfo reason and metadata of a Connect refusal (fails on anything that is not one). */
export function refusalOf(err: unknown): { code: Code; reason: string | undefined; metadata: Record<string, string> } {
  if (!(err instanceof ConnectError)) throw err;
  const info = err.findDetails(ErrorInfoSchema)[0];
  return { code: err.code, reason: info?.reason, metadata: info?.metadata ?? {} };
}

/** A small seeded PRNG (mulberry32), so a failing mix can be replayed from its printed seed. */
export function seededRandom(seed: number): { int(min: number, max: number): number; pick<T>(xs: readonly T[]): T } {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    int: (min, max) => min + Math.floor(next() * (max - min + 1)),
    pick: (xs) => xs[Math.floor(next() * xs.length)]!,
  };
}

/** Tallies values: {value: count}. */
export function countBy<T>(xs: readonly T[], key: (x: T) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) out[key(x)] = (out[key(x)] ?? 0) + 1;
  return out;
}
