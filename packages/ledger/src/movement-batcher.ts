import { balanceHeld, CommitOutcomeUnknown, failureKind, isLockTimeout, isRetryable, outcomeUnknown } from "./db-errors.js";
import { LedgerError } from "./errors.js";
import type { Idempotency } from "./idempotency.js";
import { runMovementBatch, type BatchOutcome } from "./movement-batch.js";
import type { MovementRequest, MovementResult } from "./movements.js";
import { inPooledTransaction, safeLog, type LedgerOrm } from "./orm.js";

export interface BatchingOptions {
  /** Most movements per database transaction: 1 … 10000, default 256. */
  maxBatch?: number;
  /**
   * Batch transactions of this process in flight at once: 1 … 64, default 2. While they are
   * all busy, new movements queue and go together into the next one (natural group commit:
   * no timer, an idle ledger sends the first movement at once).
   */
  maxInFlight?: number;
  /**
   * How long a batch, or a call run on its own after one, waits for a row or key lock before
   * it gives up (so one long-held balance does not hold up the others): 1 … 600000 ms,
   * default 5000. A batch that gives up runs its calls one by one; a call that gives up is
   * answered UNAVAILABLE, nothing written.
   */
  lockTimeoutMs?: number;
}

export const DEFAULT_MAX_BATCH = 256;
export const DEFAULT_MAX_IN_FLIGHT = 2;
export const DEFAULT_BATCH_LOCK_TIMEOUT_MS = 5_000;
const BATCH_ATTEMPTS = 3;

/** A call the ledger did not start because it is closing: nothing was written, a retry is safe. */
const closingRefusal = () => new LedgerError("UNAVAILABLE", "the ledger is closing, nothing was written: try again");

interface Pending {
  request: MovementRequest;
  resolve(value: MovementResult): void;
  reject(err: LedgerError): void;
}

function boundedInt(value: number | undefined, fallback: number, max: number, field: string): number {
  const v = value ?? fallback;
  if (!Number.isSafeInteger(v) || v < 1 || v > max) {
    throw new LedgerError("VALIDATION_FAILED", `batching.${field} must be an integer from 1 to ${max}`);
  }
  return v;
}

export function checkBatchingOptions(opts: BatchingOptions): Required<BatchingOptions> {
  return {
    maxBatch: boundedInt(opts.maxBatch, DEFAULT_MAX_BATCH, 10_000, "maxBatch"),
    maxInFlight: boundedInt(opts.maxInFlight, DEFAULT_MAX_IN_FLIGHT, 64, "maxInFlight"),
    lockTimeoutMs: boundedInt(opts.lockTimeoutMs, DEFAULT_BATCH_LOCK_TIMEOUT_MS, 600_000, "lockTimeoutMs"),
  };
}

/**
 * Group commit of credits and debits. Calls queue; each batch of queued calls runs in ONE
 * database transaction (`runMovementBatch`) and every call gets its own outcome: a refusal
 * is that call's alone. If the batch transaction fails as a whole:
 * - deadlock or serialization failure: the batch runs again (up to 3 attempts);
 * - any other failure before COMMIT (nothing was written): every call of the batch runs
 *   again on its own (`single`), so one bad call cannot fail its neighbours;
 * - once the batch's write and COMMIT were sent (they go in one message), a failure that
 *   leaves it unknown whether the batch committed is settled by asking the database
 *   (`inPooledTransaction`): committed, and every call gets its outcome; rolled back, and the
 *   calls run one by one as above; still unknown, and every call is answered UNAVAILABLE —
 *   never success, and never run twice.
 *
 * A balance another transaction holds for long (a stuck session, another instance cut off
 * mid-transaction) must hold up only its own calls. Every batch waits for a lock at most
 * `lockTimeoutMs`, key claims included, and then runs its calls one by one, outside its
 * batch slot: calls on one balance in a queue of their own (`Lane`), in arrival order, while
 * the others go on in batches. Until its lane is empty, new calls on that balance join it
 * rather than a batch, and for `lockTimeoutMs` after one of its calls timed out on the lock,
 * so that retries on a balance still held keep to the lane. A lane's call that times out on
 * the lock is answered UNAVAILABLE (nothing was written), and so is every call queued behind
 * it by then, without waiting again: a retry with the same idempotency key is safe.
 * Arrival order holds within a batch and within a lane; a call of the balance already in
 * another batch in flight when the lane starts may commit before or after the lane's, as any
 * two calls in flight at once may with a database.
 */
/** The calls of one balance that run one by one (see MovementBatcher). */
interface Lane {
  tail: Promise<void>;
  /** Calls queued and not yet answered. */
  pending: number;
  /** Numbers the lane's calls in arrival order. */
  queued: number;
  /** Calls numbered up to this one are answered UNAVAILABLE: a call before them timed out. */
  refuseThrough: number;
}

export class MovementBatcher {
  private readonly queue: Pending[] = [];
  private readonly lanes = new Map<string, Lane>();
  /**
   * Balances a lane's call recently found locked past the timeout, until when (performance.now ms):
   * their calls keep to the lane even once it is empty, so that a client retrying on a
   * balance still held does not put a batch in every slot to wait again.
   */
  private readonly held = new Map<string, number>();
  /**
   * Lane transactions on held balances running, and those waiting for a turn. Each holds a
   * pool connection, likely for the whole lock timeout: capped, so that clients retrying on a
   * few held balances cannot take every connection and stall the batches of all the others.
   */
  private readonly maxLaneTransactions: number;
  private laneTransactions = 0;
  private readonly laneTurns: Array<() => void> = [];
  private inFlight = 0;
  private closing = false;
  private scheduled = false;
  private readonly idle: Array<() => void> = [];
  private readonly maxBatch: number;
  private readonly maxInFlight: number;
  private readonly lockTimeoutMs: number;

  constructor(
    private readonly orm: LedgerOrm,
    private readonly idempotency: Idempotency,
    private readonly single: (m: MovementRequest, lockTimeoutMs: number) => Promise<MovementResult>,
    opts: BatchingOptions & {
      onBatch?: (size: number) => void;
      log?: (msg: string) => void;
      /** Connections in the pool: turns on held balances get what the batches leave. */
      poolMax?: number;
    } = {},
  ) {
    // A log line must never change a movement's outcome (a throw here would turn a committed
    // batch into a rerun).
    this.log = safeLog(opts.log);
    const checked = checkBatchingOptions(opts);
    this.maxBatch = checked.maxBatch;
    this.maxInFlight = checked.maxInFlight;
    this.lockTimeoutMs = checked.lockTimeoutMs;
    this.maxLaneTransactions = opts.poolMax === undefined ? Number.MAX_SAFE_INTEGER : Math.max(1, opts.poolMax - this.maxInFlight - 1);
    this.onBatch = opts.onBatch;
  }

  private readonly onBatch: ((size: number) => void) | undefined;
  private readonly log: (msg: string) => void;

  submit(request: MovementRequest): Promise<MovementResult> {
    return new Promise<MovementResult>((resolve, reject) => {
      if (this.keepsAlone(request.balanceId)) {
        this.alone({ request, resolve, reject });
        return;
      }
      this.queue.push({ request, resolve, reject });
      // setImmediate, not a microtask and not a timer: it runs once the event loop has
      // handled every socket it found readable, so requests that arrived together share a
      // batch even though each reaches here after its own awaits (auth, decoding). With a
      // microtask the first of them left alone in a batch of 1 and took a transaction slot
      // (measured: 3 of 4 batches were single calls at 32 clients). An idle ledger still
      // sends a lone movement without waiting for a timer.
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => {
          this.scheduled = false;
          this.pump();
        });
      }
    });
  }

  /**
   * Resolves once nothing is queued, in flight or in a lane. Queued calls still go in batches;
   * but a batch that fails is not run again call by call, and lane calls not yet started are
   * not started: they are answered UNAVAILABLE, nothing written. A server drains after its
   * grace period has cut the connections, when nobody waits for those calls any more, and
   * each of them could otherwise wait out a lock timeout of its own before the process exits.
   */
  drain(): Promise<void> {
    this.closing = true;
    if (this.isIdle()) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  private isIdle(): boolean {
    return this.queue.length === 0 && this.inFlight === 0 && this.lanes.size === 0;
  }

  private settle(): void {
    if (this.isIdle()) for (const done of this.idle.splice(0)) done();
  }

  private pump(): void {
    while (this.inFlight < this.maxInFlight && this.queue.length > 0) {
      const batch: Pending[] = [];
      while (batch.length < this.maxBatch && this.queue.length > 0) {
        const p = this.queue.shift()!;
        // Its balance got a lane while the call queued: it goes there, behind the others.
        if (this.keepsAlone(p.request.balanceId)) this.alone(p);
        else batch.push(p);
      }
      if (batch.length === 0) continue;
      this.inFlight += 1;
      void this.run(batch).finally(() => {
        this.inFlight -= 1;
        this.pump();
        this.settle();
      });
    }
  }

  private async run(batch: Pending[]): Promise<void> {
    const requests = batch.map((p) => p.request);
    for (let attempt = 1; ; attempt++) {
      this.report(batch.length);
      let outcomes: BatchOutcome[];
      try {
        outcomes = await inPooledTransaction(
          this.orm,
          (sql) => runMovementBatch(sql, this.orm, requests, this.idempotency.ttlSeconds),
          { lockTimeoutMs: this.lockTimeoutMs },
        );
      } catch (err) {
        if (err instanceof CommitOutcomeUnknown) {
          this.log(`ledger: ${failureKind(err)} while committing a batch of ${batch.length} movement(s); answered UNAVAILABLE`);
          const unknown = outcomeUnknown();
          for (const p of batch) p.reject(unknown);
          return;
        }
        if (isRetryable(err) && attempt < BATCH_ATTEMPTS) continue;
        if (this.closing) {
          for (const p of batch) p.reject(closingRefusal());
          return;
        }
        this.log(`ledger: a batch of ${batch.length} movement(s) failed (${failureKind(err)}); running them one by one`);
        // Not awaited: the batch's slot is free for the next batch at once.
        for (const p of batch) this.alone(p);
        return;
      }
      const again: Pending[] = [];
      outcomes.forEach((o, i) => {
        const p = batch[i]!;
        if (o.kind === "done") p.resolve(o.value);
        else if (o.kind === "refused") p.reject(o.error);
        else again.push(p);
      });
      // Same-key followers go first into the next batch, after this one has committed.
      if (again.length > 0) this.queue.unshift(...again);
      return;
    }
  }

  private laneTurn(): Promise<void> {
    if (this.laneTransactions < this.maxLaneTransactions) {
      this.laneTransactions += 1;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.laneTurns.push(resolve));
  }

  /** Hands the turn to the next lane waiting, or frees it. */
  private endLaneTurn(): void {
    const next = this.laneTurns.shift();
    if (next) next();
    else this.laneTransactions -= 1;
  }

  /** Whether calls on this balance go to its lane rather than into a batch. */
  private keepsAlone(id: string): boolean {
    return this.lanes.has(id) || this.isHeld(id);
  }

  /** Whether a lane call on this balance recently timed out on its lock. */
  private isHeld(id: string): boolean {
    const until = this.held.get(id);
    if (until === undefined) return false;
    if (until > performance.now()) return true;
    this.held.delete(id);
    return false;
  }

  /**
   * Runs a call in its own transaction, in its balance's lane: after the lane's earlier calls,
   * as a batch would have applied them, while other balances go on.
   */
  private alone(p: Pending): void {
    const id = p.request.balanceId;
    let lane = this.lanes.get(id);
    if (!lane) {
      lane = { tail: Promise.resolve(), pending: 0, queued: 0, refuseThrough: 0 };
      this.lanes.set(id, lane);
    }
    const l = lane;
    const number = ++l.queued;
    l.pending += 1;
    l.tail = l.tail.then(async () => {
      try {
        if (number <= l.refuseThrough) throw balanceHeld();
        if (this.closing) throw closingRefusal();
        // Only calls on a balance known held wait for a turn: those of a failed batch on
        // balances that are free must not queue behind a lock wait.
        const turn = this.isHeld(id);
        if (turn) await this.laneTurn();
        try {
          // Checked again after the wait for a turn, which may have outlasted the grace period.
          if (this.closing) throw closingRefusal();
          p.resolve(await this.single(p.request, this.lockTimeoutMs));
        } finally {
          if (turn) this.endLaneTurn();
        }
      } catch (err) {
        const e = err instanceof LedgerError ? err : new LedgerError("INTERNAL", "internal ledger error");
        // Those behind it would wait as long, one after the other: all are answered now.
        if (isLockTimeout(e)) {
          l.refuseThrough = l.queued;
          this.held.set(id, performance.now() + this.lockTimeoutMs);
        }
        p.reject(e);
      } finally {
        l.pending -= 1;
        if (l.pending === 0) {
          this.lanes.delete(id);
          const now = performance.now();
          for (const [balance, until] of this.held) if (until <= now) this.held.delete(balance);
          this.settle();
        }
      }
    });
  }

  private report(size: number): void {
    try {
      this.onBatch?.(size);
    } catch {
      // Metrics must never change a movement's outcome.
    }
  }
}
