// buf.validate field rules -> JSON Schema keywords, so that a client (or a form built from
// the document) refuses what the server would refuse. Only rules with an exact JSON Schema
// counterpart become keywords; the rest (CEL, timestamp gt_now, ...) are described in words.
//
// validate.proto is proto2: an unset rule reads as its default (0, ""), so presence is tested
// with isFieldSet, never by looking at the value.
import type { DescEnum, DescField, DescMessage, Message } from "@bufbuild/protobuf";
import { getOption, hasOption, isFieldSet, ScalarType } from "@bufbuild/protobuf";
import { FeatureSet_FieldPresence } from "@bufbuild/protobuf/wkt";
import {
  DoubleRulesSchema,
  EnumRulesSchema,
  field as fieldRulesExt,
  Fixed32RulesSchema,
  Fixed64RulesSchema,
  FloatRulesSchema,
  Int32RulesSchema,
  Int64RulesSchema,
  MapRulesSchema,
  RepeatedRulesSchema,
  SFixed32RulesSchema,
  SFixed64RulesSchema,
  SInt32RulesSchema,
  SInt64RulesSchema,
  StringRulesSchema,
  UInt32RulesSchema,
  UInt64RulesSchema,
  type EnumRules,
  type FieldRules,
  type MapRules,
  type RepeatedRules,
  type StringRules,
  type TimestampRules,
} from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import type { JsonSchema } from "./json-schema.js";

/** The buf.validate.field rules of a field, if it has any. */
export function fieldRules(field: DescField): FieldRules | undefined {
  return hasOption(field, fieldRulesExt) ? getOption(field, fieldRulesExt) : undefined;
}

/** Keywords for a singular scalar value under these rules (enums: see allowedEnumNumbers). */
export function valueKeywords(rules: FieldRules | undefined): JsonSchema {
  if (rules === undefined) return {};
  const t = rules.type;
  switch (t.case) {
    case "string":
      return stringKeywords(t.value);
    case "int32":
    case "int64":
    case "uint32":
    case "uint64":
    case "sint32":
    case "sint64":
    case "fixed32":
    case "fixed64":
    case "sfixed32":
    case "sfixed64":
    case "float":
    case "double":
      return numberKeywords(t.case, t.value);
    default:
      return {};
  }
}

/** Keywords of a repeated field (on the array) and of its items. */
export function repeatedKeywords(rules: FieldRules | undefined): { array: JsonSchema; items: FieldRules | undefined } {
  if (rules?.type.case !== "repeated") return { array: {}, items: undefined };
  const r: RepeatedRules = rules.type.value;
  const out: JsonSchema = {};
  if (isFieldSet(r, RepeatedRulesSchema.field.minItems)) out.minItems = Number(r.minItems);
  if (isFieldSet(r, RepeatedRulesSchema.field.maxItems)) out.maxItems = Number(r.maxItems);
  if (isFieldSet(r, RepeatedRulesSchema.field.unique) && r.unique) out.uniqueItems = true;
  return { array: out, items: r.items };
}

/** Keywords of a map field (on the object), of its keys and of its values. */
export function mapKeywords(rules: FieldRules | undefined): { object: JsonSchema; keys: FieldRules | undefined; values: FieldRules | undefined } {
  if (rules?.type.case !== "map") return { object: {}, keys: undefined, values: undefined };
  const m: MapRules = rules.type.value;
  const out: JsonSchema = {};
  if (isFieldSet(m, MapRulesSchema.field.minPairs)) out.minProperties = Number(m.minPairs);
  if (isFieldSet(m, MapRulesSchema.field.maxPairs)) out.maxProperties = Number(m.maxPairs);
  return { object: out, keys: m.keys, values: m.values };
}

/** Whether the rules make the field required (`(buf.validate.field).required = true`). */
/**
 * Whether a request must carry the field: its rules say `required`, or it has no presence
 * (absent reads as 0 or "") and its rules refuse that zero value, as `gte: 1` does.
 */
export function isRequired(field: DescField): boolean {
  const rules = fieldRules(field);
  if (rules?.required === true) return true;
  if (field.fieldKind !== "scalar" || field.presence !== FeatureSet_FieldPresence.IMPLICIT) return false;
  const k = valueKeywords(rules);
  if (field.scalar === ScalarType.STRING) return typeof k.minLength === "number" && k.minLength > 0;
  const above = (typeof k.minimum === "number" && k.minimum > 0) || (typeof k.exclusiveMinimum === "number" && k.exclusiveMinimum >= 0);
  const below = (typeof k.maximum === "number" && k.maximum < 0) || (typeof k.exclusiveMaximum === "number" && k.exclusiveMaximum <= 0);
  return above || below;
}

function stringKeywords(s: StringRules): JsonSchema {
  const f = StringRulesSchema.field;
  const out: JsonSchema = {};
  if (isFieldSet(s, f.len)) {
    out.minLength = Number(s.len);
    out.maxLength = Number(s.len);
  }
  if (isFieldSet(s, f.minLen)) out.minLength = Number(s.minLen);
  if (isFieldSet(s, f.maxLen)) out.maxLength = Number(s.maxLen);
  if (isFieldSet(s, f.pattern)) out.pattern = s.pattern;
  if (isFieldSet(s, f.const)) out.const = s.const;
  if (s.in.length > 0) out.enum = [...s.in];
  if (s.notIn.length > 0) out.not = { enum: [...s.notIn] };
  const prefixed: string[] = [];
  if (isFieldSet(s, f.prefix)) prefixed.push(`^${escapeRegex(s.prefix)}`);
  if (isFieldSet(s, f.suffix)) prefixed.push(`${escapeRegex(s.suffix)}$`);
  if (isFieldSet(s, f.contains)) prefixed.push(escapeRegex(s.contains));
  if (prefixed.length > 0) {
    // JSON Schema has one `pattern` per schema; extra ones go into allOf.
    const patterns = out.pattern === undefined ? prefixed : [out.pattern as string, ...prefixed];
    out.pattern = patterns[0];
    if (patterns.length > 1) out.allOf = patterns.slice(1).map((p) => ({ pattern: p }));
  }
  const format = stringFormat(s.wellKnown.case);
  if (format !== undefined && s.wellKnown.value === true) out.format = format;
  return out;
}

function stringFormat(c: StringRules["wellKnown"]["case"]): string | undefined {
  switch (c) {
    case "email":
      return "email";
    case "hostname":
      return "hostname";
    case "ipv4":
      return "ipv4";
    case "ipv6":
      return "ipv6";
    case "uri":
      return "uri";
    case "uriRef":
      return "uri-reference";
    case "uuid":
      return "uuid";
    default:
      return undefined;
  }
}

interface NumericRules {
  lessThan: { case: string | undefined; value?: unknown };
  greaterThan: { case: string | undefined; value?: unknown };
  const: number | bigint;
  in: (number | bigint)[];
  notIn: (number | bigint)[];
}

const numericSchemas: Record<NumericCase, DescMessage> = {
  int32: Int32RulesSchema,
  int64: Int64RulesSchema,
  uint32: UInt32RulesSchema,
  uint64: UInt64RulesSchema,
  sint32: SInt32RulesSchema,
  sint64: SInt64RulesSchema,
  fixed32: Fixed32RulesSchema,
  fixed64: Fixed64RulesSchema,
  sfixed32: SFixed32RulesSchema,
  sfixed64: SFixed64RulesSchema,
  float: FloatRulesSchema,
  double: DoubleRulesSchema,
};
type NumericCase =
  | "int32" | "int64" | "uint32" | "uint64" | "sint32" | "sint64"
  | "fixed32" | "fixed64" | "sfixed32" | "sfixed64" | "float" | "double";

function numberKeywords(kind: NumericCase, rules: Message): JsonSchema {
  const r = rules as unknown as NumericRules;
  const out: JsonSchema = {};
  const { lessThan: lt, greaterThan: gt } = r;
  if (lt.case === "lte") out.maximum = Number(lt.value);
  if (lt.case === "lt") out.exclusiveMaximum = Number(lt.value);
  if (gt.case === "gte") out.minimum = Number(gt.value);
  if (gt.case === "gt") out.exclusiveMinimum = Number(gt.value);
  const constField = numericSchemas[kind].field["const"];
  if (constField !== undefined && isFieldSet(rules, constField)) out.const = Number(r.const);
  if (r.in.length > 0) out.enum = r.in.map(Number);
  if (r.notIn.length > 0) out.not = { enum: r.notIn.map(Number) };
  return out;
}

/** The enum rules of a field, if any. */
export function enumRules(rules: FieldRules | undefined): EnumRules | undefined {
  return rules?.type.case === "enum" ? rules.type.value : undefined;
}

/**
 * The enum numbers a field accepts under its rules: defined values, narrowed by `const`,
 * `in` and `not_in`. (defined_only adds nothing: the document lists only defined values.)
 */
export function allowedEnumNumbers(rules: EnumRules | undefined, desc: DescEnum): number[] {
  let values = desc.values.map((v) => v.number);
  if (rules === undefined) return values;
  if (isFieldSet(rules, EnumRulesSchema.field.const)) values = values.filter((n) => n === rules.const);
  if (rules.in.length > 0) values = values.filter((n) => rules.in.includes(n));
  if (rules.notIn.length > 0) values = values.filter((n) => !rules.notIn.includes(n));
  return values;
}

/** Rules with no JSON Schema keyword, in words for the field's description. */
export function ruleNotes(rules: FieldRules | undefined): string[] {
  if (rules?.type.case !== "timestamp") return [];
  const t: TimestampRules = rules.type.value;
  const notes: string[] = [];
  if (t.greaterThan.case === "gtNow") notes.push("Must lie in the future.");
  if (t.lessThan.case === "ltNow") notes.push("Must lie in the past.");
  return notes;
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
