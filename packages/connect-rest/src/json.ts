// Messages -> REST JSON: proto (snake_case) field names, int64 as JSON numbers, enums as the
// lowercase word after the enum's prefix, unset explicit-presence fields as null, implicit
// scalars with their defaults, well-known types in their canonical JSON form.
import type { DescEnum, DescField, DescMessage, JsonObject, JsonValue, Message, MessageShape, Registry } from "@bufbuild/protobuf";
import { ScalarType, toJson } from "@bufbuild/protobuf";
import { reflect, type ReflectMessage } from "@bufbuild/protobuf/reflect";
import { FeatureSet_FieldPresence, isWrapperDesc } from "@bufbuild/protobuf/wkt";
import { base64Encode } from "@bufbuild/protobuf/wire";

export interface RestJsonOptions {
  /** Resolves google.protobuf.Any contents; without it an Any renders as {"@type": url}. */
  registry?: Registry;
}

/** Types whose canonical proto3 JSON form is kept as is (Timestamp -> RFC 3339, Struct -> object, ...). */
const canonicalJsonTypes = new Set([
  "google.protobuf.Timestamp",
  "google.protobuf.Duration",
  "google.protobuf.FieldMask",
  "google.protobuf.Struct",
  "google.protobuf.Value",
  "google.protobuf.ListValue",
  "google.protobuf.Empty",
]);

/** The REST JSON of a message. A plain message gives a JsonObject; a well-known type its own JSON form. */
export function toRestJson<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>, options: RestJsonOptions = {}): JsonValue {
  return messageOut(reflect(schema, message), options);
}

function messageOut(r: ReflectMessage, options: RestJsonOptions): JsonValue {
  const desc = r.desc;
  if (canonicalJsonTypes.has(desc.typeName)) return toJson(desc, r.message);
  if (isWrapperDesc(desc)) {
    const f = desc.fields[0];
    return f.fieldKind === "scalar" ? scalarOut(f.scalar, r.get(f)) : null;
  }
  if (desc.typeName === "google.protobuf.Any") {
    try {
      return toJson(desc, r.message, options.registry ? { registry: options.registry } : {});
    } catch {
      const typeUrl = (r.message as Message & { typeUrl?: string }).typeUrl ?? "";
      return { "@type": typeUrl };
    }
  }
  const out: JsonObject = {};
  for (const field of desc.fields) out[field.name] = fieldOut(r, field, options);
  return out;
}

function fieldOut(r: ReflectMessage, field: DescField, options: RestJsonOptions): JsonValue {
  switch (field.fieldKind) {
    case "scalar":
      if (field.presence !== IMPLICIT && !r.isSet(field)) return null;
      return scalarOut(field.scalar, r.get(field));
    case "enum":
      if (field.presence !== IMPLICIT && !r.isSet(field)) return null;
      return enumToRest(field.enum, r.get(field));
    case "message":
      return r.isSet(field) ? messageOut(r.get(field), options) : null;
    case "list": {
      const list = r.get(field);
      const items: JsonValue[] = [];
      for (const item of list) items.push(itemOut(field.listKind, field, item, options));
      return items;
    }
    case "map": {
      const entries: [string, JsonValue][] = [];
      for (const [k, v] of r.get(field)) entries.push([String(k), itemOut(field.mapKind, field, v, options)]);
      // fromEntries defines own properties, so a "__proto__" key stays data.
      return Object.fromEntries(entries) as JsonObject;
    }
  }
}

const IMPLICIT = FeatureSet_FieldPresence.IMPLICIT;

/** An element of a list or a value of a map. */
function itemOut(
  kind: "scalar" | "enum" | "message",
  field: { scalar?: ScalarType | undefined; enum?: DescEnum | undefined },
  item: unknown,
  options: RestJsonOptions,
): JsonValue {
  if (kind === "scalar") return scalarOut(field.scalar!, item);
  if (kind === "enum") return enumToRest(field.enum!, item as number);
  return messageOut(item as ReflectMessage, options);
}

/** int64 values are JSON numbers while they are safe integers (|n| <= 2^53-1), else strings. */
function scalarOut(type: ScalarType, value: unknown): JsonValue {
  switch (type) {
    case ScalarType.INT64:
    case ScalarType.UINT64:
    case ScalarType.SINT64:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64: {
      const n = typeof value === "bigint" ? value : BigInt(value as string | number);
      return n <= BigInt(Number.MAX_SAFE_INTEGER) && n >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(n) : n.toString();
    }
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT: {
      const n = value as number;
      if (Number.isFinite(n)) return n;
      return Number.isNaN(n) ? "NaN" : n > 0 ? "Infinity" : "-Infinity";
    }
    case ScalarType.BYTES:
      return base64Encode(value as Uint8Array);
    default:
      return value as string | number | boolean;
  }
}

/** "COLOR_RED" -> "red" for enum Color; the zero value named *_UNSPECIFIED -> null; unknown numbers stay numbers. */
export function enumToRest(desc: DescEnum, value: number): JsonValue {
  if (desc.typeName === "google.protobuf.NullValue") return null;
  const v = desc.value[value];
  if (v === undefined) return value;
  if (value === 0 && v.name.endsWith("UNSPECIFIED")) return null;
  return restEnumName(desc, v.name);
}

/** The REST spelling of an enum value name: without the shared prefix, lower case. */
export function restEnumName(desc: DescEnum, name: string): string {
  const lower = name.toLowerCase();
  const prefix = desc.sharedPrefix;
  return prefix !== undefined && lower.startsWith(prefix) && lower.length > prefix.length ? lower.slice(prefix.length) : lower;
}

/**
 * The number of an enum value given as REST ("red", "RED"), its full name ("COLOR_RED") or
 * its number; undefined if none matches.
 */
export function enumFromRest(desc: DescEnum, input: string | number): number | undefined {
  if (typeof input === "number") return Number.isInteger(input) && desc.value[input] !== undefined ? input : undefined;
  const exact = desc.values.find((v) => v.name === input);
  if (exact) return exact.number;
  const lower = input.toLowerCase();
  const found = desc.values.find((v) => v.name.toLowerCase() === lower || restEnumName(desc, v.name) === lower);
  if (found) return found.number;
  return /^-?\d+$/.test(input) && desc.value[Number(input)] !== undefined ? Number(input) : undefined;
}
