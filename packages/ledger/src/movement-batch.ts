import { LedgerError } from "./errors.js";
import { newTransactionId } from "./ids.js";
import { checkMovement, movementCodec, notFound, type MovementValue } from "./movement-rules.js";
import type { MovementRequest, MovementResult } from "./movements.js";
import type { LedgerOrm, Sql, TransactionEnd } from "./orm.js";
import type { AccountBalanceRecord } from "./entities/account-balance.entity.js";
import { balanceFromRow, dateParser, transactionFromRow, type RawRow } from "./records.js";

/**
 * What one request of a batch came to. `deferred`: its idempotency key is claimed by an
 * earlier request of the same batch; it runs in the next batch, where it finds that
 * request's stored result (or, if that one was refused, the key free).
 */
export type BatchOutcome =
  | { kind: "done"; value: MovementResult }
  | { kind: "refused"; error: LedgerError }
  | { kind: "deferred" };

interface StoredKey {
  scope: string;
  key: string;
  fingerprint: string;
  operation: string;
  status: string;
  response: unknown;
}

interface LockedRow extends RawRow {
  id: string;
  user_id: string;
  organization_id: string | null;
  project_id: string | null;
  customer_id: string | null;
  balance_type: string;
  balance_cents: string;
  currency: string;
  reference_code: string | null;
  status: string;
  expires_at: string | null;
  metadata: Record<string, string>;
  version: string;
  last_sequence: string;
  created_at: string;
  updated_at: string;
  expired: boolean;
  next_updated_at: string;
}

/** A transaction row as the batch writes it (JSON-safe: bigints as strings). */
interface TxnRow {
  id: string;
  account_balance_id: string;
  user_id: string;
  transaction_type: string;
  amount_cents: string;
  balance_before_cents: string;
  balance_after_cents: string;
  currency: string;
  description: string | null;
  reference_code: string | null;
  status: string;
  metadata: Record<string, string>;
  created_at: string;
  sequence: string;
}

/** A locked balance while the batch is applied to it in memory. */
interface Running {
  row: LockedRow;
  cents: bigint;
  moves: bigint;
}

const keyId = (k: { scope: string; key: string }): string => `${k.scope}\u0000${k.key}`;
// Any fixed total order works, as long as every transaction claims keys in it.
const byKey = (a: { scope: string; key: string }, b: { scope: string; key: string }): number =>
  a.scope < b.scope ? -1 : a.scope > b.scope ? 1 : a.key < b.key ? -1 : a.key > b.key ? 1 : 0;

/**
 * Locks the balances a batch may move, in id order, with its new time (parameters: the ids
 * as a JSON array, the visible (id, owner) pairs as JSON).
 * Expiry and the new time are read from the clock above the lock, once each row is held: a
 * scan's own columns are computed before it waits for a row, and PostgreSQL computes them
 * again only if the holder changed the row, so a debit that waited behind a lock on an
 * unchanged balance would be judged unexpired at a time before the wait.
 */
export const LOCK_BALANCES_SQL = `select l.*,
        (l.expires_at is not null and l.expires_at <= clock_timestamp()) as expired,
        greatest(date_trunc('milliseconds', clock_timestamp()), l.updated_at) as next_updated_at
   from (select b.*
           from account_balances b
          where b.id = any(array(select x from jsonb_array_elements_text(?::jsonb) as x))
            and exists (select 1 from jsonb_to_recordset(?::jsonb) as p(id text, owner text)
                         where p.id = b.id and (p.owner is null or p.owner = b.user_id))
          order by b.id
            for update of b) l`;

/**
 * Writes a whole batch in one statement (parameters: balances, transactions, keys done, keys
 * freed, all JSON, then how many rows of each the batch decided on) and raises, which rolls
 * the batch back, unless it wrote exactly those rows.
 */
export const WRITE_BATCH_SQL = `with vb as (
    select * from jsonb_to_recordset(?::jsonb) as v(id text, balance_cents bigint, moves bigint, updated_at timestamptz)
  ), u as (
    update account_balances b
       set balance_cents = vb.balance_cents, version = b.version + vb.moves,
           last_sequence = b.last_sequence + vb.moves, updated_at = vb.updated_at
      from vb
     where b.id = vb.id
       -- The planner guesses 100 rows for any JSON and would hash-join them against a
       -- sequential scan of every balance (2.5 ms at 11,000 balances, growing with the
       -- table); the id list as an init plan keeps it a primary-key lookup.
       and b.id = any(array(select vb.id from vb))
    returning 1
  ), t as (
    insert into account_transactions (id, account_balance_id, transaction_type, amount_cents,
           balance_before_cents, balance_after_cents, currency, description, reference_code, status,
           metadata, created_at, sequence)
    select v.id, v.account_balance_id, v.transaction_type, v.amount_cents, v.balance_before_cents,
           v.balance_after_cents, v.currency, v.description, v.reference_code, 'completed',
           v.metadata, v.created_at, v.sequence
      from jsonb_to_recordset(?::jsonb) as v(id text, account_balance_id text, transaction_type text,
           amount_cents bigint, balance_before_cents bigint, balance_after_cents bigint, currency text,
           description text, reference_code text, metadata jsonb, created_at timestamptz, sequence bigint)
    returning 1
  ), kd as (
    update idempotency_keys k
       set status = 'done', response = v.response
      from jsonb_to_recordset(?::jsonb) as v(scope text, key text, response jsonb)
     where k.scope = v.scope and k.key = v.key
    returning 1
  ), kf as (
    delete from idempotency_keys k
     using jsonb_to_recordset(?::jsonb) as v(scope text, key text)
     where k.scope = v.scope and k.key = v.key
    returning 1
  )
  select ledger_expect_written(
           array[(select count(*) from u), (select count(*) from t), (select count(*) from kd), (select count(*) from kf)]::int[],
           array[?, ?, ?, ?]::int[]) as wrote`;

/**
 * Runs a batch of movements with `sql`, the caller's transaction, and returns one outcome
 * per request, in order, with the batch's write as the transaction's `last` statement.
 * Lock order, the same in every transaction of the ledger: the batch's idempotency keys
 * (sorted), then its balance rows (sorted by id) — as a single movement, update or close
 * takes its key and then its one balance, no cycle can form.
 * Nothing is written until every request has been decided; then a single statement, sent
 * with COMMIT, writes every balance, transaction and key of the batch, and checks that it
 * wrote exactly that. Any database failure throws or fails that statement: the caller's
 * transaction then rolls back as a whole, and the outcomes are void.
 */
export async function runMovementBatch(
  sql: Sql,
  orm: LedgerOrm,
  requests: readonly MovementRequest[],
  ttlSeconds: number,
): Promise<TransactionEnd<BatchOutcome[]>> {
  const outcomes: Array<BatchOutcome | undefined> = new Array(requests.length);

  // 1. Idempotency keys: the first request of each key claims it (as `idempotency.run` does,
  //    in this transaction); later ones of the same key wait for the next batch.
  const firstOfKey = new Map<string, number>();
  const claimants: number[] = [];
  requests.forEach((r, i) => {
    if (!r.key) return;
    const id = keyId(r.key);
    if (!firstOfKey.has(id)) {
      firstOfKey.set(id, i);
      claimants.push(i);
    }
  });
  const claimed = new Set<string>();
  if (claimants.length > 0) {
    const rows = claimants
      .map((i) => ({ ...requests[i]!.key!, operation: requests[i]!.kind }))
      .sort(byKey);
    // ON CONFLICT waits for a concurrent uncommitted claim of the same key, and takes over
    // an expired row as if it were absent.
    const got = (await sql(
      `insert into idempotency_keys (scope, key, fingerprint, operation, status, created_at, expires_at)
       select v.scope, v.key, v.fingerprint, v.operation, 'in_flight', now(), now() + make_interval(secs => ?)
         from rows from (jsonb_to_recordset(?::jsonb) as (scope text, key text, fingerprint text, operation text))
              with ordinality as v(scope, key, fingerprint, operation, n)
        order by v.n
       on conflict (scope, key) do update
          set fingerprint = excluded.fingerprint, operation = excluded.operation, status = 'in_flight',
              response = null, created_at = excluded.created_at, expires_at = excluded.expires_at
        where idempotency_keys.expires_at <= now()
       returning scope, key`,
      [ttlSeconds, JSON.stringify(rows)],
    )) as Array<{ scope: string; key: string }>;
    for (const k of got) claimed.add(keyId(k));

    // Keys already stored: a new statement (a new snapshot) sees rows committed while we waited.
    const stored = new Map<string, StoredKey>();
    const others = rows.filter((k) => !claimed.has(keyId(k)));
    if (others.length > 0) {
      const found = (await sql(
        `select k.scope, k.key, k.fingerprint, k.operation, k.status, k.response
           from idempotency_keys k
           join jsonb_to_recordset(?::jsonb) as v(scope text, key text) on k.scope = v.scope and k.key = v.key`,
        [JSON.stringify(others.map((k) => ({ scope: k.scope, key: k.key })))],
      )) as StoredKey[];
      for (const s of found) stored.set(keyId(s), s);
    }

    requests.forEach((r, i) => {
      if (!r.key) return;
      const id = keyId(r.key);
      if (claimed.has(id)) {
        if (firstOfKey.get(id) !== i) outcomes[i] = { kind: "deferred" };
        return;
      }
      outcomes[i] = replay(orm, stored.get(id), r);
    });
  }

  // 2. Lock every balance some remaining request may move, in id order. Another owner's
  //    balance is not even locked: only rows matching a visible (id, owner) pair are.
  const wanted = new Map<string, Set<string | null>>();
  requests.forEach((r, i) => {
    if (outcomes[i] || r.balanceId === "") return;
    const owners = wanted.get(r.balanceId) ?? new Set<string | null>();
    owners.add(r.ownerId ?? null);
    wanted.set(r.balanceId, owners);
  });
  const pairs: Array<{ id: string; owner: string | null }> = [];
  for (const [id, owners] of wanted) {
    // Without an owner the balance is visible to the request: that one pair covers all.
    if (owners.has(null)) pairs.push({ id, owner: null });
    else for (const owner of owners) pairs.push({ id, owner });
  }
  const running = new Map<string, Running>();
  if (pairs.length > 0) {
    // `= any(array(…))` keeps it an index scan whatever the planner thinks of the JSON's
    // row count. A wait here (or for a key, above) ends at the batch's lock timeout, set
    // with BEGIN (MovementBatcher).
    // The new time of each balance is taken once, under its lock: the database clock to the
    // millisecond, never before the balance's last change, so per balance `created_at`
    // never runs backwards against `sequence`.
    const locked = (await sql(
      LOCK_BALANCES_SQL,
      [JSON.stringify([...wanted.keys()]), JSON.stringify(pairs)],
    )) as LockedRow[];
    for (const row of locked) running.set(row.id, { row, cents: BigInt(row.balance_cents), moves: 0n });
  }

  // 3. Apply in arrival order, in memory: each request is checked against the balance as the
  //    requests before it in this batch left it. A refusal changes nothing for the others.
  interface Accepted {
    index: number;
    request: MovementRequest;
    balance: Running;
    before: bigint;
    after: bigint;
    moves: bigint;
    txnId: string;
  }
  const accepted: Accepted[] = [];
  requests.forEach((r, i) => {
    if (outcomes[i]) return;
    const b = r.balanceId === "" ? undefined : running.get(r.balanceId);
    try {
      if (!b || (r.ownerId !== undefined && b.row.user_id !== r.ownerId)) throw notFound();
      const after = checkMovement({ status: b.row.status, expired: b.row.expired, cents: b.cents }, r);
      accepted.push({ index: i, request: r, balance: b, before: b.cents, after, moves: b.moves + 1n, txnId: newTransactionId() });
      b.cents = after;
      b.moves += 1n;
    } catch (err) {
      if (!(err instanceof LedgerError)) throw err;
      outcomes[i] = { kind: "refused", error: err };
    }
  });

  // 4. Results: the balance as it was right after each movement, and its transaction.
  const parseDate = dateParser(orm.em);
  const done: Array<{ scope: string; key: string; response: unknown }> = [];
  const transactions: TxnRow[] = [];
  for (const a of accepted) {
    const { row } = a.balance;
    const sequence = (BigInt(row.last_sequence) + a.moves).toString();
    const txn: TxnRow = {
      id: a.txnId,
      account_balance_id: row.id,
      user_id: row.user_id,
      transaction_type: a.request.kind,
      amount_cents: a.request.amount.toString(),
      balance_before_cents: a.before.toString(),
      balance_after_cents: a.after.toString(),
      currency: row.currency,
      description: a.request.description,
      reference_code: a.request.referenceCode,
      status: "completed",
      metadata: a.request.metadata,
      created_at: row.next_updated_at,
      sequence,
    };
    transactions.push(txn);
    const value: MovementValue = {
      balance: balanceRecord(parseDate, row, {
        balanceCents: a.after,
        version: BigInt(row.version) + a.moves,
        lastSequence: BigInt(sequence),
      }),
      transaction: transactionFromRow(txn as unknown as RawRow, parseDate),
    };
    outcomes[a.index] = { kind: "done", value: { ...value, replayed: false } };
    if (a.request.key) done.push({ ...pick(a.request.key), response: movementCodec.encode(value) });
  }

  // A refused request's claim is dropped, as the rollback of its own transaction would:
  // refusals are not stored, and the key is free again.
  const freed = claimants
    .filter((i) => outcomes[i]?.kind === "refused" && claimed.has(keyId(requests[i]!.key!)))
    .map((i) => pick(requests[i]!.key!));

  // 5. One statement writes the whole batch, sent with COMMIT.
  const balances = [...running.values()]
    .filter((b) => b.moves > 0n)
    .map((b) => ({
      id: b.row.id,
      balance_cents: b.cents.toString(),
      moves: b.moves.toString(),
      updated_at: b.row.next_updated_at,
    }));
  const value = outcomes.map((o) => o ?? { kind: "refused" as const, error: new LedgerError("INTERNAL", "internal ledger error") });
  if (balances.length === 0 && freed.length === 0) return { value };
  return {
    value,
    last: {
      sql: WRITE_BATCH_SQL,
      params: [
        JSON.stringify(balances),
        JSON.stringify(transactions),
        JSON.stringify(done),
        JSON.stringify(freed),
        balances.length,
        transactions.length,
        done.length,
        freed.length,
      ],
    },
  };
}

const pick = (k: { scope: string; key: string }) => ({ scope: k.scope, key: k.key });

/** A key stored by an earlier call: its result again, or why it cannot be replayed. */
function replay(orm: LedgerOrm, stored: StoredKey | undefined, r: MovementRequest): BatchOutcome {
  if (!stored) return { kind: "refused", error: new LedgerError("INTERNAL", "internal ledger error") };
  if (stored.fingerprint !== r.key!.fingerprint || stored.operation !== r.kind) {
    return {
      kind: "refused",
      error: new LedgerError("IDEMPOTENCY_KEY_REUSED", "this idempotency key was already used for a different request"),
    };
  }
  if (stored.status !== "done") {
    return {
      kind: "refused",
      error: new LedgerError("IDEMPOTENCY_KEY_REUSED", "a request with this idempotency key is still running", {
        state: "in_flight",
      }),
    };
  }
  const value = movementCodec.decode(stored.response, orm.em.fork());
  return { kind: "done", value: { ...value, replayed: true } };
}

/** The record of a locked balance after the batch's movements on it. */
function balanceRecord(
  parseDate: (v: unknown) => Date,
  row: LockedRow,
  now: { balanceCents: bigint; version: bigint; lastSequence: bigint },
): AccountBalanceRecord {
  return { ...balanceFromRow(row, parseDate), ...now, updatedAt: parseDate(row.next_updated_at) };
}

