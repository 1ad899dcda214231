// Messages, enums and fields -> JSON Schema, as the REST gateway renders them
// (packages/connect-rest/src/json.ts): proto field names, every field present, int64 as JSON
// integers, enums as the lowercase word after the enum's prefix with *_UNSPECIFIED as null,
// unset explicit-presence fields and unset messages as null, well-known types in their
// canonical JSON form (Timestamp: RFC 3339 string, Struct: object).
import type { DescEnum, DescField, DescMessage } from "@bufbuild/protobuf";
import { ScalarType } from "@bufbuild/protobuf";
import { FeatureSet_FieldPresence } from "@bufbuild/protobuf/wkt";
import { getComments } from "@bufbuild/protoplugin";
import type { FieldRules } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { nullable, type JsonSchema } from "./json-schema.js";
import { allowedEnumNumbers, enumRules, fieldRules, isRequired, mapKeywords, repeatedKeywords, ruleNotes, valueKeywords } from "./rules.js";

/** The lowercase REST word of an enum value ("BALANCE_TYPE_GENERAL" -> "general"), as the gateway writes it. */
export function restEnumName(desc: DescEnum, name: string): string {
  const lower = name.toLowerCase();
  const prefix = desc.sharedPrefix;
  return prefix !== undefined && lower.startsWith(prefix) && lower.length > prefix.length ? lower.slice(prefix.length) : lower;
}

/** Whether the gateway renders the zero value of this enum as null. */
export function zeroIsNull(desc: DescEnum): boolean {
  const zero = desc.value[0];
  return zero !== undefined && zero.name.endsWith("UNSPECIFIED");
}

/** The REST words of the given enum numbers (UNSPECIFIED zero left out: it is null). */
export function restEnumWords(desc: DescEnum, numbers: readonly number[]): string[] {
  return desc.values
    .filter((v) => numbers.includes(v.number) && !(v.number === 0 && zeroIsNull(desc)))
    .map((v) => restEnumName(desc, v.name));
}

/** The text of a descriptor's leading comment (or trailing, when there is no leading one). */
export function commentText(desc: Parameters<typeof getComments>[0]): string | undefined {
  const c = getComments(desc);
  const text = (c.leading ?? c.trailing ?? "")
    .split("\n")
    .map((l) => l.replace(/^ /, "").trimEnd())
    // Linter directives are for buf, not for readers.
    .filter((l) => !/^buf:lint:/.test(l.trim()))
    .join("\n")
    .trim();
  return text === "" ? undefined : text;
}

/** A field's comment and the rules that have no keyword (unless the comment already says so). */
export function fieldDescription(field: DescField, rules: FieldRules | undefined = fieldRules(field)): string | undefined {
  const doc = commentText(field);
  const notes = ruleNotes(rules).filter((n) => doc === undefined || !doc.toLowerCase().includes(n.toLowerCase().replace(/\.$/, "")));
  const parts = [doc, ...notes].filter((s): s is string => s !== undefined);
  return parts.length > 0 ? parts.join("\n\n") : undefined;
}

export interface SchemaNames {
  /** The components.schemas key of a message or enum. */
  name(typeName: string): string;
}

const IMPLICIT = FeatureSet_FieldPresence.IMPLICIT;

export class SchemaBuilder {
  constructor(
    private readonly names: SchemaNames,
    /** Messages that appear in responses: the gateway writes every field, so all are required. */
    private readonly outputs: ReadonlySet<string>,
  ) {}

  ref(typeName: string): JsonSchema {
    return { $ref: `#/components/schemas/${this.names.name(typeName)}` };
  }

  /** components.schemas entry of an enum: its REST words. */
  enumSchema(desc: DescEnum): JsonSchema {
    const out: JsonSchema = { type: "string", enum: restEnumWords(desc, desc.values.map((v) => v.number)) };
    const doc = commentText(desc);
    if (doc !== undefined) out.description = doc;
    return out;
  }

  /** components.schemas entry of a message. */
  messageSchema(desc: DescMessage): JsonSchema {
    const wkt = wellKnownSchema(desc.typeName);
    if (wkt !== undefined) return wkt;
    const properties: JsonSchema = {};
    const required: string[] = [];
    const output = this.outputs.has(desc.typeName);
    for (const f of desc.fields) {
      properties[f.name] = this.fieldSchema(f);
      if (output || isRequired(f)) required.push(f.name);
    }
    const out: JsonSchema = { type: "object", properties };
    if (required.length > 0) out.required = required;
    const doc = commentText(desc);
    if (doc !== undefined) out.description = doc;
    return out;
  }

  /** The schema of a field's REST JSON value, with its validation rules as keywords. */
  fieldSchema(field: DescField, opts: { nullable?: boolean } = {}): JsonSchema {
    const rules = fieldRules(field);
    let schema: JsonSchema;
    switch (field.fieldKind) {
      case "list": {
        const { array, items } = repeatedKeywords(rules);
        schema = { type: "array", items: this.itemSchema(field, items), ...array };
        break;
      }
      case "map": {
        const { object, keys, values } = mapKeywords(rules);
        schema = { type: "object", additionalProperties: this.itemSchema(field, values), ...object };
        const keySchema = { ...mapKeyFormat(field.mapKey), ...valueKeywords(keys) };
        if (Object.keys(keySchema).length > 0) schema.propertyNames = { type: "string", ...keySchema };
        break;
      }
      default: {
        schema = this.singularSchema(field, rules);
        const absentIsNull =
          field.fieldKind === "message"
            ? !isValueType(field.message.typeName)
            : field.presence !== IMPLICIT || (field.fieldKind === "enum" && zeroIsNull(field.enum));
        if (absentIsNull && opts.nullable !== false) schema = nullable(schema);
      }
    }
    return this.describe(schema, field, rules);
  }

  /** The schema of a singular field's value, never null (query parameters, list items). */
  singularSchema(field: DescField, rules: FieldRules | undefined): JsonSchema {
    switch (field.fieldKind) {
      case "scalar":
        return { ...scalarSchema(field.scalar), ...valueKeywords(rules) };
      case "enum":
        return this.enumValueSchema(field.enum, rules);
      case "message":
        return this.messageValueSchema(field.message, rules);
      default:
        throw new Error(`${field.toString()} is not singular`);
    }
  }

  private itemSchema(field: DescField, rules: FieldRules | undefined): JsonSchema {
    const kind = field.fieldKind === "list" ? field.listKind : field.fieldKind === "map" ? field.mapKind : undefined;
    if (kind === "scalar") return { ...scalarSchema(field.scalar!), ...valueKeywords(rules) };
    if (kind === "enum") return this.enumValueSchema(field.enum!, rules);
    return this.messageValueSchema(field.message!, rules);
  }

  private enumValueSchema(desc: DescEnum, rules: FieldRules | undefined): JsonSchema {
    const allowed = allowedEnumNumbers(enumRules(rules), desc);
    if (allowed.length === desc.values.length) return this.ref(desc.typeName);
    return { type: "string", enum: restEnumWords(desc, allowed) };
  }

  private messageValueSchema(desc: DescMessage, rules: FieldRules | undefined): JsonSchema {
    const wkt = wellKnownSchema(desc.typeName);
    if (wkt !== undefined) return { ...wkt, ...valueKeywords(rules) };
    return this.ref(desc.typeName);
  }

  private describe(schema: JsonSchema, field: DescField, rules: FieldRules | undefined): JsonSchema {
    const text = fieldDescription(field, rules);
    return text === undefined ? schema : { ...schema, description: text };
  }
}

/** Well-known types whose JSON form is not a plain object of their fields. */
export function wellKnownSchema(typeName: string): JsonSchema | undefined {
  switch (typeName) {
    case "google.protobuf.Timestamp":
      return { type: "string", format: "date-time" };
    case "google.protobuf.Duration":
      return { type: "string", pattern: "^-?\\d+(\\.\\d{1,9})?s$" };
    case "google.protobuf.FieldMask":
      return { type: "string" };
    case "google.protobuf.Struct":
      return { type: "object", additionalProperties: true };
    case "google.protobuf.ListValue":
      return { type: "array" };
    case "google.protobuf.Value":
      return {};
    case "google.protobuf.Empty":
      return { type: "object" };
    case "google.protobuf.Any":
      return { type: "object", properties: { "@type": { type: "string" } }, required: ["@type"] };
    case "google.protobuf.DoubleValue":
      return { type: "number", format: "double" };
    case "google.protobuf.FloatValue":
      return { type: "number", format: "float" };
    case "google.protobuf.Int64Value":
    case "google.protobuf.UInt64Value":
      return { type: "integer", format: "int64" };
    case "google.protobuf.Int32Value":
    case "google.protobuf.UInt32Value":
      return { type: "integer", format: "int32" };
    case "google.protobuf.BoolValue":
      return { type: "boolean" };
    case "google.protobuf.StringValue":
      return { type: "string" };
    case "google.protobuf.BytesValue":
      return { type: "string", contentEncoding: "base64" };
    default:
      return undefined;
  }
}

/** google.protobuf.Value renders null itself; it is never wrapped in another null. */
function isValueType(typeName: string): boolean {
  return typeName === "google.protobuf.Value";
}

/** The JSON Schema of a scalar as the gateway writes it (64-bit integers as JSON integers). */
export function scalarSchema(type: ScalarType): JsonSchema {
  switch (type) {
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return { type: "integer", format: "int32" };
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return { type: "integer", format: "int64", minimum: 0, maximum: 4294967295 };
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return { type: "integer", format: "int64" };
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return { type: "integer", format: "int64", minimum: 0 };
    case ScalarType.DOUBLE:
      return { type: "number", format: "double" };
    case ScalarType.FLOAT:
      return { type: "number", format: "float" };
    case ScalarType.BOOL:
      return { type: "boolean" };
    case ScalarType.STRING:
      return { type: "string" };
    case ScalarType.BYTES:
      return { type: "string", contentEncoding: "base64" };
  }
}

function mapKeyFormat(key: ScalarType | undefined): JsonSchema {
  switch (key) {
    case undefined:
    case ScalarType.STRING:
      return {};
    case ScalarType.BOOL:
      return { enum: ["true", "false"] };
    default:
      return { pattern: "^-?\\d+$" };
  }
}
