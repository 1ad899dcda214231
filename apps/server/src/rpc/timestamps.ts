import type { DescField, DescMessage, Message } from "@bufbuild/protobuf";
import { reflect, type ReflectMessage } from "@bufbuild/protobuf/reflect";
import { TimestampSchema, type Timestamp } from "@bufbuild/protobuf/wkt";

// google.protobuf.Timestamp's own range: 0001-01-01T00:00:00Z … 9999-12-31T23:59:59.999999999Z.
const MIN_SECONDS = -62_135_596_800n;
const MAX_SECONDS = 253_402_300_799n;
const MAX_NANOS = 999_999_999;

/** Whether `ts` is an instant the Timestamp type allows (the JSON parsers enforce it; binary does not). */
export function isValidTimestamp(ts: Timestamp): boolean {
  return ts.seconds >= MIN_SECONDS && ts.seconds <= MAX_SECONDS && Number.isInteger(ts.nanos) && ts.nanos >= 0 && ts.nanos <= MAX_NANOS;
}

const holdsTimestamps = new Map<string, boolean>();

/** Whether messages of `schema` can hold a Timestamp at any depth (cached: most requests cannot). */
function mayHoldTimestamps(schema: DescMessage): boolean {
  let holds = holdsTimestamps.get(schema.typeName);
  if (holds === undefined) {
    holds = reaches(schema, new Set());
    holdsTimestamps.set(schema.typeName, holds);
  }
  return holds;
}

function reaches(schema: DescMessage, seen: Set<string>): boolean {
  if (seen.has(schema.typeName)) return false; // a recursive message: its other fields decide
  seen.add(schema.typeName);
  return schema.fields.some((f) => {
    const nested = messageOf(f);
    return nested !== undefined && (nested.typeName === TimestampSchema.typeName || reaches(nested, seen));
  });
}

function messageOf(field: DescField): DescMessage | undefined {
  if (field.fieldKind === "message") return field.message;
  if (field.fieldKind === "list" && field.listKind === "message") return field.message;
  if (field.fieldKind === "map" && field.mapKind === "message") return field.message;
  return undefined;
}

/**
 * The paths of the Timestamps in `message` that lie outside the type's range or carry nanos
 * outside 0 … 999,999,999. A binary (gRPC, Connect proto) request can send any int64 seconds;
 * PostgreSQL refuses years past 294276, and the JSON encoder throws on bad nanos, so without
 * this check such a request ended as INTERNAL instead of a refusal.
 */
export function invalidTimestamps(schema: DescMessage, message: Message): string[] {
  if (!mayHoldTimestamps(schema)) return [];
  const found: string[] = [];
  visit(reflect(schema, message), "", found);
  return found;
}

function visit(r: ReflectMessage, prefix: string, found: string[]): void {
  for (const field of r.fields) {
    const nested = messageOf(field);
    if (nested === undefined || !r.isSet(field)) continue;
    const path = `${prefix}${field.name}`;
    const check = (value: unknown, at: string) => {
      const m = value as ReflectMessage;
      if (nested.typeName === TimestampSchema.typeName) {
        if (!isValidTimestamp(m.message as Timestamp)) found.push(at);
      } else if (mayHoldTimestamps(nested)) {
        visit(m, `${at}.`, found);
      }
    };
    if (field.fieldKind === "message") check(r.get(field), path);
    else if (field.fieldKind === "list") [...r.get(field)].forEach((v, i) => check(v, `${path}[${i}]`));
    else if (field.fieldKind === "map") for (const [k, v] of r.get(field)) check(v, `${path}[${String(k)}]`);
  }
}
