import { monotonicFactory } from "ulid";

// Monotonic so ids minted in the same millisecond still sort in creation order,
// which keeps "oldest first" listings stable when they tie-break on id.
const nextUlid = monotonicFactory();

export const newBalanceId = (): string => `bal_${nextUlid()}`;
export const newTransactionId = (): string => `txn_${nextUlid()}`;
