import { CommitOutcomeUnknown, failureKind, isRetryable, outcomeUnknown } from "./db-errors.js";
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
   * How long a batch that moves several balances waits for a row or key lock before it
   * gives up and runs its calls one by one (so one long-held balance does not hold up the
   * others): 1 … 600000 ms, default 5000.
   */
  lockTimeoutMs?: number;
}

export const DEFAULT_MAX_BATCH = 256;
export const DEFAULT_MAX_IN_FLIGHT = 2;
export const DEFAULT_BATCH_LOCK_TIMEOUT_MS = 5_000;
const BATCH_ATTEMPTS = 3;

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
 */
export class MovementBatcher {
  private readonly queue: Pending[] = [];
  private inFlight = 0;
  private scheduled = false;
  private readonly idle: Array<() => void> = [];
  private readonly maxBatch: number;
  private readonly maxInFlight: number;
  private readonly lockTimeoutMs: number;

  constructor(
    private readonly orm: LedgerOrm,
    private readonly idempotency: Idempotency,
    private readonly single: (m: MovementRequest) => Promise<MovementResult>,
    opts: BatchingOptions & { onBatch?: (size: number) => void; log?: (msg: string) => void } = {},
  ) {
    // A log line must never change a movement's outcome (a throw here would turn a committed
    // batch into a rerun).
    this.log = safeLog(opts.log);
    const checked = checkBatchingOptions(opts);
    this.maxBatch = checked.maxBatch;
    this.maxInFlight = checked.maxInFlight;
    this.lockTimeoutMs = checked.lockTimeoutMs;
    this.onBatch = opts.onBatch;
  }

  private readonly onBatch: ((size: number) => void) | undefined;
  private readonly log: (msg: string) => void;

  submit(request: MovementRequest): Promise<MovementResult> {
    return new Promise<MovementResult>((resolve, reject) => {
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

  /** Resolves once nothing is queued or in flight. */
  drain(): Promise<void> {
    if (this.queue.length === 0 && this.inFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  private pump(): void {
    while (this.inFlight < this.maxInFlight && this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxBatch);
      this.inFlight += 1;
      void this.run(batch).finally(() => {
        this.inFlight -= 1;
        this.pump();
        if (this.queue.length === 0 && this.inFlight === 0) for (const done of this.idle.splice(0)) done();
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
          (sql) => runMovementBatch(sql, this.orm, requests, this.idempotency.ttlSeconds, this.lockTimeoutMs),
        );
      } catch (err) {
        if (err instanceof CommitOutcomeUnknown) {
          this.log(`ledger: ${failureKind(err)} while committing a batch of ${batch.length} movement(s); answered UNAVAILABLE`);
          const unknown = outcomeUnknown();
          for (const p of batch) p.reject(unknown);
          return;
        }
        if (isRetryable(err) && attempt < BATCH_ATTEMPTS) continue;
        this.log(`ledger: a batch of ${batch.length} movement(s) failed (${failureKind(err)}); running them one by one`);
        await this.oneByOne(batch);
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

  /**
   * The fallback: every call in its own transaction. Calls on one balance run one after the
   * other in arrival order, as the batch would have applied them; balances in parallel.
   */
  private async oneByOne(batch: Pending[]): Promise<void> {
    const byBalance = new Map<string, Pending[]>();
    for (const p of batch) {
      const list = byBalance.get(p.request.balanceId) ?? [];
      list.push(p);
      byBalance.set(p.request.balanceId, list);
    }
    await Promise.all(
      [...byBalance.values()].map(async (list) => {
        for (const p of list) {
          try {
            p.resolve(await this.single(p.request));
          } catch (err) {
            p.reject(err instanceof LedgerError ? err : new LedgerError("INTERNAL", "internal ledger error"));
          }
        }
      }),
    );
  }

  private report(size: number): void {
    try {
      this.onBatch?.(size);
    } catch {
      // Metrics must never change a movement's outcome.
    }
  }
}
