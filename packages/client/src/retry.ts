import { AccountBalanceError } from "./errors.js";

/** Automatic retries of credit and debit (always with the same idempotency key). */
export interface RetryOptions {
  /** Attempts in all, the first included; default 3. 1 turns retries off. */
  readonly maxAttempts?: number;
  /** Backoff before the first retry; default 100 ms, doubling on each retry. */
  readonly initialBackoffMs?: number;
  /** Longest backoff; default 2000 ms. */
  readonly maxBackoffMs?: number;
}

export const DEFAULT_RETRY: Required<RetryOptions> = { maxAttempts: 3, initialBackoffMs: 100, maxBackoffMs: 2000 };

/**
 * Runs `attempt` until it succeeds, fails with a non-retryable error, or runs out of attempts.
 * Only transient failures (UNAVAILABLE, DEADLINE_EXCEEDED) are retried: the caller makes the
 * call idempotent first, so a retry after a request that did land returns the first result.
 */
export async function withRetry<T>(
  attempt: (n: number) => Promise<T>,
  options: RetryOptions | false | undefined,
  signal?: AbortSignal,
): Promise<T> {
  const { maxAttempts, initialBackoffMs, maxBackoffMs } = { ...DEFAULT_RETRY, ...(options || {}) };
  const attempts = options === false ? 1 : Math.max(1, Math.floor(maxAttempts));
  for (let n = 1; ; n++) {
    try {
      return await attempt(n);
    } catch (err) {
      const e = AccountBalanceError.from(err);
      if (!e.retryable || n >= attempts || signal?.aborted) throw e;
      await sleep(backoff(n, initialBackoffMs, maxBackoffMs), signal);
    }
  }
}

/** Exponential backoff with "equal jitter": half fixed, half random, so retries spread out. */
export function backoff(retry: number, initialMs: number, maxMs: number): number {
  const ceiling = Math.min(maxMs, initialMs * 2 ** (retry - 1));
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}
