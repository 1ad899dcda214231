import { randomFillSync } from "node:crypto";
import { monotonicFactory } from "ulid";

// ulid's own Node PRNG calls crypto.randomBytes(1) once per character: 16 calls into
// OpenSSL (each with its own getpid checks, syscalls that are dear on a virtual machine)
// for every id minted in a new millisecond. Draw the same CSPRNG bytes from a pool instead.
const pool = new Uint8Array(4096);
let next = pool.length;

/** Uniform in [0, 1) in steps of 1/256: unbiased for ulid's 32-letter alphabet (256 = 8 × 32). */
function pooledRandom(): number {
  if (next === pool.length) {
    randomFillSync(pool);
    next = 0;
  }
  return pool[next++]! / 256;
}

// Monotonic so ids minted in the same millisecond still sort in creation order,
// which keeps "oldest first" listings stable when they tie-break on id.
const nextUlid = monotonicFactory(pooledRandom);

export const newBalanceId = (): string => `bal_${nextUlid()}`;
export const newTransactionId = (): string => `txn_${nextUlid()}`;
