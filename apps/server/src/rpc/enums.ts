import type { DescEnum } from "@bufbuild/protobuf";
import { refusal } from "../errors.js";

/**
 * The ledger stores enum values as the spec's lowercase words ("general", "active"); the
 * contract has prefixed enums (BALANCE_TYPE_GENERAL). The word is the value's local name,
 * lower-cased, so one rule converts every enum both ways.
 */
export function enumToWord(schema: DescEnum, value: number): string | undefined {
  if (value === 0) return undefined;
  return schema.values.find((v) => v.number === value)?.localName.toLowerCase();
}

export function wordToEnum(schema: DescEnum, word: string): number {
  const value = schema.values.find((v) => v.localName.toLowerCase() === word);
  if (!value) {
    // The database only holds values its CHECK constraints allow; reaching this is a bug.
    throw refusal("INTERNAL", "internal error");
  }
  return value.number;
}
