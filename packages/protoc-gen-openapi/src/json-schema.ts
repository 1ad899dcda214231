/** A JSON Schema (2020-12, as OpenAPI 3.1 uses it) or any other JSON object of the document. */
export type JsonSchema = { [key: string]: JsonValue | undefined };
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue | undefined };

/** The schema that also admits null: what the gateway renders for an absent optional or message field. */
export function nullable(schema: JsonSchema): JsonSchema {
  if (typeof schema.$ref === "string" || schema.anyOf !== undefined || schema.oneOf !== undefined) {
    const { description, ...rest } = schema;
    const out: JsonSchema = { anyOf: [rest, { type: "null" }] };
    if (description !== undefined) out.description = description;
    return out;
  }
  const out: JsonSchema = { ...schema };
  if (typeof schema.type === "string") out.type = [schema.type, "null"];
  else if (Array.isArray(schema.type) && !schema.type.includes("null")) out.type = [...schema.type, "null"];
  else if (schema.type === undefined) return schema; // already admits anything
  if (Array.isArray(schema.enum) && !schema.enum.includes(null)) out.enum = [...schema.enum, null];
  if (schema.const !== undefined) {
    out.enum = [schema.const, null];
    delete out.const;
  }
  return out;
}
