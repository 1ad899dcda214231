// Path variables, query string and JSON body -> the request message of a route.
//
// Everything is checked against the field it fills, so a malformed value is an
// INVALID_ARGUMENT naming the field (HTTP 400), never an exception deeper down (500).
import type { DescEnum, DescField, DescMessage, JsonObject, JsonValue, Message } from "@bufbuild/protobuf";
import { fromJson, ScalarType } from "@bufbuild/protobuf";
import { isWrapperDesc } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { enumFromRest, restEnumName } from "./json.js";
import type { RestRoute } from "./routes.js";
import { resolveFieldPath } from "./routes.js";

export interface RequestParts {
  /** Path variable values by field path, as matchRoute gives them (decoded). */
  readonly values: ReadonlyMap<string, string>;
  readonly query: URLSearchParams;
  /** The parsed JSON body; undefined when the route takes none or none was sent. */
  readonly body: JsonValue | undefined;
  /** Query fields (paths) whose bare date `YYYY-MM-DD` means the end of that day, not its start. */
  readonly dateEndsDay?: ReadonlySet<string>;
}

/** Builds the request message of a route. Throws ConnectError(InvalidArgument) on bad input. */
export function buildRequest(route: RestRoute, parts: RequestParts): Message {
  const json = buildRequestJson(route, parts);
  try {
    return fromJson(route.method.input, json);
  } catch (e) {
    // Values are pre-checked by type; what reaches here is e.g. a malformed timestamp or base64.
    throw invalid(e instanceof Error ? e.message : "malformed request");
  }
}

/** The request as canonical proto3 JSON (proto field names) ready for fromJson. */
export function buildRequestJson(route: RestRoute, parts: RequestParts): JsonObject {
  const schema = route.method.input;
  let out: JsonObject = {};
  if (route.body === "*") {
    if (parts.body !== undefined) {
      if (!isObject(parts.body)) throw invalid("the request body must be a JSON object");
      out = normalizeMessageJson(schema, parts.body);
    }
  } else if (route.bodyField !== undefined && parts.body !== undefined && parts.body !== null) {
    out[route.bodyField.name] = fieldIn(route.bodyField, parts.body, route.bodyField.name);
  }
  if (route.body !== "*") {
    const bound = new Set(route.variables.map((v) => v.fieldPath.join(".")));
    const given = new Map<string, string>();
    for (const key of new Set(parts.query.keys())) {
      const fields = resolveFieldPath(schema, key.split("."));
      if (fields === undefined) continue; // unknown parameters (e.g. session_id) are not ours
      if (fields[0] === route.bodyField) continue;
      const path = fields.map((f) => f.name).join(".");
      if (bound.has(path)) continue;
      let raws = parts.query.getAll(key).filter((v) => v !== "");
      // An inclusive upper bound given as a day ("to=2026-11-27") takes in the whole day.
      if (parts.dateEndsDay?.has(path)) raws = raws.map((v) => (dateOnlyRe.test(v) ? `${v}T23:59:59.999999999Z` : v));
      if (raws.length === 0) continue; // "?limit=" means not given
      // ?balance_type=a&balanceType=b: one field under its two names, as in a body.
      const other = given.get(path);
      if (other !== undefined) throw invalid(`${path}: given twice (as ${JSON.stringify(other)} and ${JSON.stringify(key)})`);
      given.set(path, key);
      setIn(out, fields, queryIn(fields, raws, path));
    }
  }
  for (const v of route.variables) {
    const raw = parts.values.get(v.fieldPath.join(".")) ?? "";
    const leaf = v.fields[v.fields.length - 1]!;
    setIn(out, v.fields, textIn(leaf, raw, v.fieldPath.join(".")));
  }
  return out;
}

/**
 * Normalizes a REST JSON object for fromJson: snake_case or lowerCamel keys, unknown keys
 * dropped, null = absent, enums as "red"/"COLOR_RED"/1, integers range-checked.
 *
 * Except where the contract can remove a value: null for a field `x` of a message that also
 * has a bool `clear_x` sets `clear_x` (proto3 JSON cannot tell null from absent, and a REST
 * client removes a value by sending null).
 */
export function normalizeMessageJson(schema: DescMessage, json: JsonObject, path = ""): JsonObject {
  const out: JsonObject = {};
  const given = new Map<string, string>();
  for (const [key, value] of Object.entries(json)) {
    const field = schema.fields.find((f) => f.name === key) ?? schema.fields.find((f) => f.jsonName === key);
    if (field === undefined) continue;
    // {"amount_cents": 1, "amountCents": 3}: one field twice, under its two names.
    const other = given.get(field.name);
    if (other !== undefined) throw invalid(`${join(path, field.name)}: given twice (as ${JSON.stringify(other)} and ${JSON.stringify(key)})`);
    given.set(field.name, key);
    if (value === null && !isValueMessage(field)) {
      const clear = schema.fields.find((f) => f.name === `clear_${field.name}` && f.fieldKind === "scalar" && f.scalar === ScalarType.BOOL);
      if (clear === undefined) continue;
      const also = given.get(clear.name);
      if (also !== undefined) throw invalid(`${join(path, field.name)}: null and ${JSON.stringify(also)} both given`);
      given.set(clear.name, key);
      out[clear.name] = true;
      continue;
    }
    out[field.name] = fieldIn(field, value, join(path, field.name));
  }
  return out;
}

function fieldIn(field: DescField, value: JsonValue, path: string): JsonValue {
  switch (field.fieldKind) {
    case "scalar":
      return scalarIn(field.scalar, value, path);
    case "enum":
      return enumIn(field.enum, value, path);
    case "message":
      return messageIn(field.message, value, path);
    case "list": {
      if (!Array.isArray(value)) throw invalid(`${path}: expected an array`);
      return value.map((item, i) => {
        const p = `${path}[${i}]`;
        if (item === null && !isValueMessage(field)) throw invalid(`${p}: null is not allowed in a list`);
        return field.listKind === "scalar"
          ? scalarIn(field.scalar, item, p)
          : field.listKind === "enum"
            ? enumIn(field.enum, item, p)
            : messageIn(field.message, item, p);
      });
    }
    case "map": {
      if (!isObject(value)) throw invalid(`${path}: expected a JSON object`);
      const entries = Object.entries(value).map(([k, item]): [string, JsonValue] => {
        const p = `${path}[${JSON.stringify(k)}]`;
        if (item === null && !isValueMessage(field)) throw invalid(`${p}: null is not allowed in a map`);
        const v =
          field.mapKind === "scalar"
            ? scalarIn(field.scalar, item, p)
            : field.mapKind === "enum"
              ? enumIn(field.enum, item, p)
              : messageIn(field.message, item, p);
        return [k, v];
      });
      // fromEntries defines own properties, so a "__proto__" key stays data.
      return Object.fromEntries(entries) as JsonObject;
    }
  }
}

function messageIn(desc: DescMessage, value: JsonValue, path: string): JsonValue {
  if (desc.typeName === "google.protobuf.Timestamp") return timestampIn(value, path);
  if (isWrapperDesc(desc)) {
    const f = desc.fields[0];
    return f.fieldKind === "scalar" ? scalarIn(f.scalar, value, path) : value;
  }
  if (desc.typeName === "google.protobuf.Struct" && !isObject(value)) throw invalid(`${path}: expected a JSON object`);
  if (desc.typeName === "google.protobuf.ListValue" && !Array.isArray(value)) throw invalid(`${path}: expected an array`);
  if (desc.typeName.startsWith("google.protobuf.") && desc.typeName !== "google.protobuf.Empty") {
    return value; // Struct, Value, ListValue, Duration, FieldMask, Any: fromJson checks their forms
  }
  if (!isObject(value)) throw invalid(`${path}: expected a JSON object`);
  return normalizeMessageJson(desc, value, path);
}

const intRe = /^[+-]?\d+$/;
const floatRe = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
const int32Range = [-(2n ** 31n), 2n ** 31n - 1n] as const;
const uint32Range = [0n, 2n ** 32n - 1n] as const;
const int64Range = [-(2n ** 63n), 2n ** 63n - 1n] as const;
const uint64Range = [0n, 2n ** 64n - 1n] as const;
const float32Max = 3.4028234663852886e38;

function intRange(type: ScalarType): readonly [bigint, bigint] | undefined {
  switch (type) {
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return int32Range;
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return uint32Range;
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return int64Range;
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return uint64Range;
    default:
      return undefined;
  }
}

function is64(type: ScalarType): boolean {
  return intRange(type) === int64Range || intRange(type) === uint64Range;
}

/** A JSON body value for a scalar field. */
function scalarIn(type: ScalarType, value: JsonValue, path: string): JsonValue {
  const range = intRange(type);
  if (range !== undefined) {
    let text: string;
    if (typeof value === "number") {
      if (!Number.isInteger(value)) throw invalid(`${path}: expected an integer`);
      // JSON.parse has already rounded anything past 2^53; refuse rather than store a wrong amount.
      if (!Number.isSafeInteger(value)) throw invalid(`${path}: integer too large for a JSON number; send it as a string`);
      text = String(value);
    } else if (typeof value === "string" && intRe.test(value)) {
      text = value;
    } else {
      throw invalid(`${path}: expected an integer`);
    }
    return checkedInt(type, range, text, path);
  }
  switch (type) {
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT: {
      const n = typeof value === "number" ? value : typeof value === "string" ? floatText(value) : undefined;
      if (n === undefined) throw invalid(`${path}: expected a number`);
      if (type === ScalarType.FLOAT && Number.isFinite(n) && Math.abs(n) > float32Max) throw invalid(`${path}: number out of range`);
      return value;
    }
    case ScalarType.BOOL:
      if (typeof value !== "boolean") throw invalid(`${path}: expected true or false`);
      return value;
    case ScalarType.STRING:
      if (typeof value !== "string") throw invalid(`${path}: expected a string`);
      return value;
    case ScalarType.BYTES:
      if (typeof value !== "string") throw invalid(`${path}: expected a base64 string`);
      return value;
    default:
      return value;
  }
}

function checkedInt(type: ScalarType, range: readonly [bigint, bigint], text: string, path: string): JsonValue {
  const n = BigInt(text);
  if (n < range[0] || n > range[1]) throw invalid(`${path}: integer out of range`);
  return is64(type) ? n.toString() : Number(n);
}

function floatText(s: string): number | undefined {
  if (s === "NaN") return NaN;
  if (s === "Infinity") return Infinity;
  if (s === "-Infinity") return -Infinity;
  return floatRe.test(s) ? Number(s) : undefined;
}

function enumIn(desc: DescEnum, value: JsonValue, path: string): JsonValue {
  if (desc.typeName === "google.protobuf.NullValue" && value === null) return null;
  if (typeof value === "string" || typeof value === "number") {
    const n = enumFromRest(desc, value);
    if (n !== undefined) return n;
  }
  throw invalid(`${path}: expected one of ${enumChoices(desc)}`);
}

function enumChoices(desc: DescEnum): string {
  return desc.values
    .filter((v) => !(v.number === 0 && v.name.endsWith("UNSPECIFIED")))
    .map((v) => restEnumName(desc, v.name))
    .join(", ");
}

const dateOnlyRe = /^\d{4}-\d{2}-\d{2}$/;
// The form fromJson accepts (RFC 3339 with "T", seconds, optional fraction, Z or offset).
const rfc3339Re = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;

/** RFC 3339; a bare date means midnight UTC (a common REST client shortcut; see RequestParts.dateEndsDay). */
function timestampIn(value: JsonValue, path: string): JsonValue {
  if (typeof value !== "string") throw invalid(`${path}: expected an RFC 3339 timestamp`);
  // A "+" offset sent unescaped in a query string arrives as a space.
  const text = dateOnlyRe.test(value) ? `${value}T00:00:00Z` : value.toUpperCase().replace(/ (\d{2}:\d{2})$/, "+$1");
  if (!rfc3339Re.test(text) || !onTheCalendar(text) || Number.isNaN(Date.parse(text))) {
    throw invalid(`${path}: expected an RFC 3339 timestamp`);
  }
  return text;
}

/** Whether every part of an RFC 3339 text names a real date and time: Date.parse takes 2030-02-31 as March 3rd. */
function onTheCalendar(text: string): boolean {
  const [year, month, day, hour, minute, second] = [0, 5, 8, 11, 14, 17].map((at) => Number(text.slice(at, at + (at === 0 ? 4 : 2))));
  const leap = (year! % 4 === 0 && year! % 100 !== 0) || year! % 400 === 0;
  const daysInMonth = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month! - 1] ?? 0;
  // (An offset past 23:59 is already NaN to Date.parse.)
  return month! >= 1 && month! <= 12 && day! >= 1 && day! <= daysInMonth && hour! <= 23 && minute! <= 59 && second! <= 59;
}

/** The typed value of one query parameter (all its occurrences) for the field it names. */
function queryIn(fields: readonly DescField[], raws: readonly string[], path: string): JsonValue {
  for (const f of fields.slice(0, -1)) {
    if (f.fieldKind !== "message" || f.message.typeName.startsWith("google.protobuf.")) {
      throw invalid(`${path}: cannot be set from the query string`);
    }
  }
  const leaf = fields[fields.length - 1]!;
  if (leaf.fieldKind === "list") {
    const elem =
      leaf.listKind === "scalar"
        ? (raw: string) => scalarText(leaf.scalar, raw, path)
        : leaf.listKind === "enum"
          ? (raw: string) => enumIn(leaf.enum, raw, path)
          : (raw: string) => wktText(leaf.message, raw, path);
    return raws.map(elem);
  }
  if (raws.length > 1) throw invalid(`${path}: given more than once`);
  return textIn(leaf, raws[0]!, path);
}

/** A single text value (query parameter or path variable) for a singular field. */
function textIn(field: DescField, raw: string, path: string): JsonValue {
  switch (field.fieldKind) {
    case "scalar":
      return scalarText(field.scalar, raw, path);
    case "enum":
      return enumIn(field.enum, raw, path);
    case "message":
      return wktText(field.message, raw, path);
    default:
      throw invalid(`${path}: cannot be set from the query string`);
  }
}

function scalarText(type: ScalarType, raw: string, path: string): JsonValue {
  const range = intRange(type);
  if (range !== undefined) {
    if (!intRe.test(raw)) throw invalid(`${path}: expected an integer`);
    return checkedInt(type, range, raw, path);
  }
  switch (type) {
    case ScalarType.BOOL: {
      const v = raw.toLowerCase();
      if (v === "true" || v === "1") return true;
      if (v === "false" || v === "0") return false;
      throw invalid(`${path}: expected true or false`);
    }
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return scalarIn(type, raw, path);
    default:
      return raw; // string, bytes (base64; fromJson checks it)
  }
}

/** Well-known types with a string JSON form can come from the query string. */
function wktText(desc: DescMessage, raw: string, path: string): JsonValue {
  if (desc.typeName === "google.protobuf.Timestamp") return timestampIn(raw, path);
  if (desc.typeName === "google.protobuf.Duration" || desc.typeName === "google.protobuf.FieldMask") return raw;
  if (isWrapperDesc(desc)) {
    const f = desc.fields[0];
    if (f.fieldKind === "scalar") return scalarText(f.scalar, raw, path);
  }
  throw invalid(`${path}: cannot be set from the query string`);
}

function setIn(target: JsonObject, fields: readonly DescField[], value: JsonValue): void {
  let obj = target;
  for (const f of fields.slice(0, -1)) {
    const next = obj[f.name];
    if (isObject(next)) {
      obj = next;
    } else {
      const created: JsonObject = {};
      obj[f.name] = created;
      obj = created;
    }
  }
  obj[fields[fields.length - 1]!.name] = value;
}

function isObject(v: JsonValue | undefined): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isValueMessage(field: DescField): boolean {
  return field.message?.typeName === "google.protobuf.Value";
}

function join(path: string, name: string): string {
  return path === "" ? name : `${path}.${name}`;
}

function invalid(message: string): ConnectError {
  return new ConnectError(message, Code.InvalidArgument);
}
