import { LedgerError } from "./errors.js";

export function invalid(message: string, field?: string): LedgerError {
  return new LedgerError("VALIDATION_FAILED", message, field ? { field } : {});
}

export function requireNonEmpty(value: unknown, field: string): string {
  if (typeof value !== "string" || value.trim() === "") throw invalid(`${field} is required`, field);
  return value;
}

export function optionalString(value: unknown, field: string): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== "string") throw invalid(`${field} must be a string`, field);
  return value;
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
  const out: Record<string, string> = {};
  for (const [key, v] of Object.entries(value)) {
    if (typeof v !== "string") throw invalid(`${field}.${key} must be a string`, field);
    out[key] = v;
  }
  return out;
}

export function requirePositiveInt(value: unknown, field: string, max?: number): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1 || (max !== undefined && value > max)) {
    throw invalid(`${field} must be an integer from 1${max !== undefined ? ` to ${max}` : ""}`, field);
  }
  return value;
}
