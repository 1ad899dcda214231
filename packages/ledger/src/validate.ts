import { LedgerError } from "./errors.js";
import { MAX_CENTS, isKnownCurrency } from "./domain.js";

export function invalid(message: string, field?: string): LedgerError {
  return new LedgerError("VALIDATION_FAILED", message, field ? { field } : {});
}

// PostgreSQL text and jsonb cannot hold U+0000; refuse it as bad input rather than fail in SQL.
const NUL = "\u0000";

// Half of a UTF-16 pair on its own: PostgreSQL refuses it in jsonb (as the JSON escape
// "\ud800") and pg would write U+FFFD in its place in text.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Text PostgreSQL stores as given: no NUL, no lone surrogate. */
export function requireText(value: string, field: string): string {
  if (value.includes(NUL)) throw invalid(`${field} must not contain NUL characters`, field);
  if (LONE_SURROGATE.test(value)) throw invalid(`${field} must be valid Unicode text (it has a lone surrogate)`, field);
  return value;
}

export function requireNonEmpty(value: unknown, field: string): string {
  if (typeof value !== "string" || value.trim() === "") throw invalid(`${field} is required`, field);
  return requireText(value, field);
}

export function optionalString(value: unknown, field: string): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== "string") throw invalid(`${field} must be a string`, field);
  return requireText(value, field);
}

export function requireOneOf<T extends string>(value: unknown, allowed: readonly T[], field: string): T {
  if (typeof value !== "string" || !(allowed as readonly string[]).includes(value)) {
    throw invalid(`${field} must be one of ${allowed.join(", ")}`, field);
  }
  return value as T;
}

export function requireDate(value: unknown, field: string): Date {
  if (!(value instanceof Date) || Number.isNaN(value.getTime())) throw invalid(`${field} must be a valid time`, field);
  return value;
}

/** Metadata is a flat object of string values (it maps onto a protobuf map<string, string>). */
export function requireMetadata(value: unknown, field = "metadata"): Record<string, string> {
  if (value === undefined || value === null) return {};
  if (typeof value !== "object" || Array.isArray(value)) throw invalid(`${field} must be an object of strings`, field);
  const out: Array<[string, string]> = [];
  for (const [key, v] of Object.entries(value)) {
    if (typeof v !== "string") throw invalid(`${field}.${key} must be a string`, field);
    requireText(key, field);
    requireText(v, field);
    out.push([key, v]);
  }
  // fromEntries defines own properties: a "__proto__" key stays data instead of vanishing.
  return Object.fromEntries(out);
}

export function requirePositiveInt(value: unknown, field: string, max?: number): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1 || (max !== undefined && value > max)) {
    throw invalid(`${field} must be an integer from 1${max !== undefined ? ` to ${max}` : ""}`, field);
  }
  return value;
}

export function requireCurrency(value: unknown, field = "currency"): string {
  if (typeof value !== "string" || !isKnownCurrency(value)) {
    throw invalid(`${field} must be a known ISO 4217 currency code in upper case`, field);
  }
  return value;
}

/** A movement amount: 1 … 2^53-1 minor units. */
export function requireAmount(value: unknown, field = "amount_cents"): bigint {
  if (typeof value !== "bigint") throw invalid(`${field} must be an integer`, field);
  if (value < 1n || value > MAX_CENTS) throw invalid(`${field} must be from 1 to ${MAX_CENTS}`, field);
  return value;
}

export function optionalDate(value: unknown, field: string): Date | undefined {
  return value === undefined || value === null ? undefined : requireDate(value, field);
}

export function requireBoolean(value: unknown, field: string): boolean {
  if (typeof value !== "boolean") throw invalid(`${field} must be true or false`, field);
  return value;
}

/** An id that can name a row; anything else simply names nothing (NOT_FOUND, never an error). */
export function isUsableId(value: unknown): value is string {
  return typeof value === "string" && value !== "" && !value.includes(NUL) && !LONE_SURROGATE.test(value);
}
