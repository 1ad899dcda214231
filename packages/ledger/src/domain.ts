/** The closed vocabularies of the ledger; the migrations enforce the same lists with CHECKs. */
export const BALANCE_TYPES = ["general", "credits", "promotional", "refund"] as const;
export type BalanceType = (typeof BALANCE_TYPES)[number];

export const BALANCE_STATUSES = ["active", "suspended", "expired", "closed"] as const;
export type BalanceStatus = (typeof BALANCE_STATUSES)[number];

export const TRANSACTION_TYPES = ["credit", "debit", "transfer", "expiration", "adjustment"] as const;
export type TransactionType = (typeof TRANSACTION_TYPES)[number];

/** 2^53-1: every amount and balance stays exact for JSON clients that parse numbers as doubles. */
export const MAX_CENTS = 9_007_199_254_740_991n;

let knownCurrencies: ReadonlySet<string> | undefined;

/** ISO 4217 alpha-3 codes known to this runtime's ICU data. */
export function isKnownCurrency(code: string): boolean {
  knownCurrencies ??= new Set(Intl.supportedValuesOf("currency"));
  return /^[A-Z]{3}$/.test(code) && knownCurrencies.has(code);
}
