/** Ids match the contract's pattern ^bal_[0-9A-HJKMNP-TV-Z]{26}$: 6-character set prefix + 20 digits. */
export const SET_PREFIX = {
  debit: "BENCH0",
  hot: "BENCH1",
  big: "BENCH2",
  small: "BENCH3",
  user: "BENCH4",
} as const;
export type SetName = keyof typeof SET_PREFIX;

export function balanceId(set: SetName, i: number): string {
  return `bal_${SET_PREFIX[set]}${String(i).padStart(20, "0")}`;
}

