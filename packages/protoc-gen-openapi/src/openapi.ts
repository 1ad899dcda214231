// The OpenAPI 3.1 document of the REST gateway, built from the contract's descriptors.
//
// What the gateway and the server's envelope do is written down here once:
// - paths: the base path + each google.api.http template ("/" alone is the base path itself);
// - GET/DELETE (no body): every request field not bound by the path is a query parameter;
//   body "*": the request message minus the path fields is the JSON body;
// - success: `{success: true, ...fields of the response message}` (lists carry data + meta),
//   200, or 201 for a create (a POST on "/" unless the `created` option names methods);
// - failure: `{success: false, error, code, details}`, code one of the ErrorReason words;
// - credentials: X-Session-ID, Authorization: Bearer (session id or service token), query or
//   cookie session_id (spec section 5).
import type { DescEnum, DescField, DescFile, DescMessage, DescService } from "@bufbuild/protobuf";
import { nestedTypes } from "@bufbuild/protobuf/reflect";
import { findHttpExtension, httpBindings, openApiPath, templateVariables, type HttpBinding } from "./http.js";
import type { JsonSchema } from "./json-schema.js";
import { allowedEnumNumbers, enumRules, fieldRules, isRequired } from "./rules.js";
import { commentText, fieldDescription, restEnumName, restEnumWords, SchemaBuilder, wellKnownSchema, zeroIsNull } from "./schemas.js";

export interface OpenApiOptions {
  /** Prefix of every REST route. Default "/bridge-payment/account-balance". */
  basePath: string;
  /** info.title. */
  title: string;
  /** info.version. */
  version: string;
  /** info.description (Markdown). */
  description?: string | undefined;
  /**
   * Methods (name or full name) that answer 201 Created. Empty: every POST whose template is
   * exactly "/" (the collection itself), which is how the server's envelope decides it.
   */
  created: readonly string[];
  /** Full name of the enum whose values are the error `code`s. Default: the enum named ErrorReason. */
  errorReasonEnum?: string | undefined;
  /** Header that carries a request's idempotency_key field on mutating routes. Default "Idempotency-Key". */
  idempotencyHeader: string;
}

const defaultDescription = [
  "The REST JSON gateway of the account-balance service, generated from its Protobuf contract",
  "(`google.api.http` routes, `buf.validate` rules). The same operations are served as gRPC, Connect and gRPC-Web.",
  "",
  "- Success: `{\"success\": true, \"data\": ...}`; lists add `\"meta\": {page, limit, total, hasMore}`. Create answers 201.",
  "- Failure: `{\"success\": false, \"error\": \"...\", \"code\": \"<reason>\", \"details\": ...}` with the HTTP status of the reason.",
  "- Money is integer minor units (`*_cents`, JSON integers); times are RFC 3339 UTC strings; enums are lowercase words;",
  "  absent optional values are `null`.",
  "- Credentials, in this order: header `X-Session-ID`, `Authorization: Bearer <session id or service token>`,",
  "  query `session_id`, cookie `session_id`.",
].join("\n");

export const defaultOptions: OpenApiOptions = {
  basePath: "/bridge-payment/account-balance",
  title: "Account Balance REST API",
  version: "v1",
  description: defaultDescription,
  created: [],
  idempotencyHeader: "Idempotency-Key",
};

/** Error responses by status: the component name and what the status means (spec section 4). */
const errorResponses = [
  ["400", "BadRequest", "Invalid input (VALIDATION_FAILED) or a failed precondition (INSUFFICIENT_BALANCE, BALANCE_NOT_ACTIVE, BALANCE_EXPIRED, BALANCE_NOT_EMPTY, AMOUNT_OUT_OF_RANGE), or a malformed body or query value."],
  ["401", "Unauthorized", "No session, or an invalid or expired one (UNAUTHENTICATED)."],
  ["403", "Forbidden", "The caller's role may not do this (FORBIDDEN)."],
  ["404", "NotFound", "No such balance, or one the caller may not see (NOT_FOUND); also every route while the module is disabled (MODULE_DISABLED)."],
  ["409", "Conflict", "An Idempotency-Key reused with a different request (IDEMPOTENCY_KEY_REUSED), or a duplicate balance (DUPLICATE_BALANCE)."],
  ["413", "PayloadTooLarge", "The request body is larger than the server's limit."],
  ["415", "UnsupportedMediaType", "The request body is not application/json (UTF-8)."],
  ["429", "TooManyRequests", "Too many requests (TOO_MANY_REQUESTS)."],
  ["503", "ServiceUnavailable", "The database is unavailable, or a balance stayed locked by another transaction (UNAVAILABLE); nothing was written unless the message says the write may have taken effect. Retry with the same Idempotency-Key."],
  ["504", "GatewayTimeout", "The call ran out of time (REQUEST_TIMEOUT_MS or the caller's deadline) while the database held it up (UNAVAILABLE). A write may still take effect: retry with the same Idempotency-Key, which returns its result if it did."],
] as const;

const SUCCESS = "SuccessEnvelope";
const ERROR = "ErrorResponse";

export const securitySchemes = {
  sessionHeader: { type: "apiKey", in: "header", name: "X-Session-ID", description: "A session id (checked first)." },
  bearerAuth: { type: "http", scheme: "bearer", description: "A session id, or a service token (role `service`)." },
  sessionQuery: { type: "apiKey", in: "query", name: "session_id", description: "A session id in the query string." },
  sessionCookie: { type: "apiKey", in: "cookie", name: "session_id", description: "A session id in a cookie." },
} as const;

/** Builds the document for the services declared in `files` (allFiles: the files and all they import). */
export function buildOpenApi(files: readonly DescFile[], allFiles: readonly DescFile[], options: OpenApiOptions): JsonSchema {
  const services = files.flatMap((f) => f.services);
  const bindings = httpBindings(services, findHttpExtension(allFiles));
  const restServices = services.filter((s) => bindings.some((b) => b.service === s));

  const { messages, enums } = collectTypes(restServices, allFiles);
  const outputs = reachable(bindings.map((b) => b.method.output));
  const names = componentNames([...messages.keys(), ...enums.keys()], [SUCCESS, ERROR]);
  const builder = new SchemaBuilder(names, outputs);
  const errorEnum = findErrorReasonEnum(enums, options.errorReasonEnum);

  const schemas: JsonSchema = {};
  for (const [typeName, desc] of [...messages].sort(byKey)) schemas[names.name(typeName)] = builder.messageSchema(desc);
  for (const [typeName, desc] of [...enums].sort(byKey)) {
    schemas[names.name(typeName)] = desc === errorEnum ? errorReasonSchema(desc) : builder.enumSchema(desc);
  }
  schemas[SUCCESS] = {
    type: "object",
    description: "Every success: `success` is true and the fields of the operation's response message follow (`data`, and `meta` on lists).",
    required: ["success"],
    properties: { success: { type: "boolean", const: true } },
  };
  schemas[ERROR] = {
    type: "object",
    description: "Every failure. `code` is the machine-readable reason; `details` carries reason-specific values (e.g. `required_cents`, `available_cents` for INSUFFICIENT_BALANCE).",
    required: ["success", "error", "code", "details"],
    properties: {
      success: { type: "boolean", const: false },
      error: { type: "string", description: "A human-readable message." },
      code: errorEnum ? builder.ref(errorEnum.typeName) : { type: "string" },
      details: { type: ["object", "null"], additionalProperties: true },
    },
  };

  const paths: JsonSchema = {};
  const operationIds = new Set<string>();
  for (const b of bindings) {
    const path = openApiPath(options.basePath, b.template);
    const item = (paths[path] ??= {}) as JsonSchema;
    if (item[b.verb] !== undefined) throw new Error(`${b.verb.toUpperCase()} ${path} is bound twice (${b.method.toString()})`);
    item[b.verb] = operation(b, builder, options, uniqueId(b, operationIds));
  }

  const doc: JsonSchema = {
    openapi: "3.1.0",
    info: { title: options.title, version: options.version, ...(options.description ? { description: options.description } : {}) },
    servers: [{ url: "/" }],
    "x-rest-base-path": options.basePath,
    tags: restServices.map((s) => withDescription({ name: s.name }, commentText(s))),
    security: Object.keys(securitySchemes).map((k) => ({ [k]: [] })),
    paths,
    components: {
      schemas,
      responses: Object.fromEntries(
        errorResponses.map(([, name, description]) => [name, { description, content: { "application/json": { schema: { $ref: `#/components/schemas/${ERROR}` } } } }]),
      ),
      securitySchemes,
    },
  };
  return doc;
}

function operation(b: HttpBinding, builder: SchemaBuilder, options: OpenApiOptions, operationId: string): JsonSchema {
  const { method, verb, template } = b;
  const input = method.input;
  const pathVars = templateVariables(template);
  const bound = new Set(pathVars);
  const parameters: JsonSchema[] = [];

  for (const v of pathVars) {
    const field = resolveField(input, v);
    if (field === undefined) throw new Error(`${method.toString()}: path variable ${v} is not a field of ${input.typeName}`);
    parameters.push(withDescription({ name: v, in: "path", required: true, schema: paramSchema(field, builder) }, fieldDoc(field)));
  }
  if (b.body !== "*") {
    for (const field of input.fields) {
      if (bound.has(field.name) || field.name === b.body) continue;
      const schema = queryParamSchema(field, builder);
      if (schema === undefined) continue; // maps and plain messages cannot come from a query string
      const p: JsonSchema = { name: field.name, in: "query", schema };
      if (field.fieldKind === "list") Object.assign(p, { style: "form", explode: true });
      parameters.push(withDescription(p, fieldDoc(field)));
    }
  }
  const idem = input.fields.find((f) => f.name === "idempotency_key");
  if (idem !== undefined && verb !== "get") {
    const schema = paramSchema(idem, builder);
    parameters.push({
      name: options.idempotencyHeader,
      in: "header",
      schema,
      description: `Repeats of a call with the same key return the first result; the same key with a different request is IDEMPOTENCY_KEY_REUSED (409). Same as the \`${idem.name}\` field.`,
    });
  }

  const op: JsonSchema = { operationId, tags: [b.service.name] };
  const doc = commentText(method);
  op.summary = summaryOf(method.name);
  if (doc !== undefined) op.description = doc;
  if (parameters.length > 0) op.parameters = parameters;

  const hasBody = b.body !== "";
  if (b.body === "*") {
    const schema =
      bound.size === 0
        ? builder.ref(input.typeName)
        : inlineBody(input.fields.filter((f) => !bound.has(f.name)), builder);
    op.requestBody = { required: true, content: { "application/json": { schema } } };
  } else if (hasBody) {
    const field = input.fields.find((f) => f.name === b.body);
    if (field === undefined) throw new Error(`${method.toString()}: body field ${b.body} is not a field of ${input.typeName}`);
    op.requestBody = { required: true, content: { "application/json": { schema: builder.fieldSchema(field) } } };
  }

  const created = options.created.length > 0 ? options.created.some((n) => n === method.name || n === `${b.service.typeName}.${method.name}`) : verb === "post" && template === "/";
  const responses: JsonSchema = {
    [created ? "201" : "200"]: {
      description: created ? "Created." : "OK.",
      content: { "application/json": { schema: successSchema(b, builder) } },
    },
  };
  for (const [status, name] of errorResponses) {
    if ((status === "413" || status === "415") && !hasBody) continue;
    if (status === "409" && verb === "get") continue;
    responses[status] = { $ref: `#/components/responses/${name}` };
  }
  responses.default = { description: "Any other failure (e.g. 405, 500).", content: { "application/json": { schema: { $ref: `#/components/schemas/${ERROR}` } } } };
  op.responses = responses;
  return op;
}

/** `{success: true}` and the response message's fields (or the response_body field as `data`). */
/** A request body of the fields a path does not bind, with the ones a request must carry as required. */
function inlineBody(fields: readonly DescField[], builder: SchemaBuilder): JsonSchema {
  const out: JsonSchema = { type: "object", properties: Object.fromEntries(fields.map((f) => [f.name, builder.fieldSchema(f)])) };
  const required = fields.filter((f) => isRequired(f)).map((f) => f.name);
  if (required.length > 0) out.required = required;
  return out;
}

function successSchema(b: HttpBinding, builder: SchemaBuilder): JsonSchema {
  const envelope = { $ref: `#/components/schemas/${SUCCESS}` };
  if (b.responseBody === "") return { allOf: [envelope, builder.ref(b.method.output.typeName)] };
  const field = b.method.output.fields.find((f) => f.name === b.responseBody);
  if (field === undefined) throw new Error(`${b.method.toString()}: response_body ${b.responseBody} is not a field`);
  if (field.fieldKind === "message" && wellKnownSchema(field.message.typeName) === undefined) {
    return { allOf: [envelope, builder.ref(field.message.typeName)] };
  }
  return { allOf: [envelope, { type: "object", required: ["data"], properties: { data: builder.fieldSchema(field) } }] };
}

/** A path parameter or header value: the field's schema, never null. */
function paramSchema(field: DescField, builder: SchemaBuilder): JsonSchema {
  if (field.fieldKind === "enum") return enumParamSchema(field);
  const { description: _d, ...schema } = builder.fieldSchema(field, { nullable: false });
  return schema;
}

/** A query parameter's schema, or undefined when the field cannot be set from a query string. */
function queryParamSchema(field: DescField, builder: SchemaBuilder): JsonSchema | undefined {
  switch (field.fieldKind) {
    case "scalar":
    case "enum":
      return paramSchema(field, builder);
    case "message": {
      // Only well-known types with a scalar JSON form (Timestamp, Duration, wrappers...).
      const t = wellKnownSchema(field.message.typeName)?.type;
      return t === "string" || t === "integer" || t === "number" || t === "boolean" ? paramSchema(field, builder) : undefined;
    }
    case "list": {
      if (field.listKind === "message") return undefined;
      const { description: _d, ...schema } = builder.fieldSchema(field);
      if (field.listKind === "enum") schema.items = { type: "string", enum: restEnumWords(field.enum, allowedEnumNumbers(undefined, field.enum)) };
      return schema;
    }
    default:
      return undefined;
  }
}

/** Enums in parameters: the lowercase words inline, so a reader sees them next to the parameter. */
function enumParamSchema(field: DescField & { fieldKind: "enum" }): JsonSchema {
  return { type: "string", enum: restEnumWords(field.enum, allowedEnumNumbers(enumRules(fieldRules(field)), field.enum)) };
}

function fieldDoc(field: DescField): string | undefined {
  return fieldDescription(field);
}

function resolveField(message: DescMessage, path: string): DescField | undefined {
  let msg: DescMessage | undefined = message;
  let found: DescField | undefined;
  for (const name of path.split(".")) {
    found = msg?.fields.find((f) => f.name === name);
    if (found === undefined) return undefined;
    msg = found.fieldKind === "message" ? found.message : undefined;
  }
  return found;
}

/**
 * The method name in words ("GetMyTotalBalance" -> "Get my total balance"): the spec's own
 * operation names. The method's comment, when it has one, is the description.
 */
function summaryOf(name: string): string {
  const words = name.replace(/([a-z0-9])([A-Z])/g, "$1 $2").toLowerCase();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

function uniqueId(b: HttpBinding, used: Set<string>): string {
  let id = b.method.name;
  if (used.has(id)) id = `${b.service.name}_${b.method.name}`;
  for (let i = 2; used.has(id); i++) id = `${b.service.name}_${b.method.name}_${i}`;
  used.add(id);
  return id;
}

function withDescription(obj: JsonSchema, description: string | undefined): JsonSchema {
  return description === undefined ? obj : { ...obj, description };
}

/**
 * Messages and enums to describe: every one declared in the packages of the REST services
 * (the whole contract, error reasons included), and every one reachable from their methods.
 * Well-known types with their own JSON form are inlined, not listed.
 */
function collectTypes(services: readonly DescService[], allFiles: readonly DescFile[]) {
  const messages = new Map<string, DescMessage>();
  const enums = new Map<string, DescEnum>();
  const packages = new Set(services.map((s) => s.file.proto.package));
  const addMessage = (m: DescMessage): void => {
    if (messages.has(m.typeName) || wellKnownSchema(m.typeName) !== undefined) return;
    messages.set(m.typeName, m);
    for (const f of m.fields) {
      if (f.message !== undefined) addMessage(f.message);
      if (f.enum !== undefined) enums.set(f.enum.typeName, f.enum);
    }
  };
  for (const file of allFiles) {
    if (!packages.has(file.proto.package)) continue;
    for (const t of nestedTypes(file)) {
      if (t.kind === "message") addMessage(t);
      else if (t.kind === "enum") enums.set(t.typeName, t);
    }
  }
  for (const s of services) {
    for (const m of s.methods) {
      addMessage(m.input);
      addMessage(m.output);
    }
  }
  return { messages, enums };
}

/** Type names of the messages reachable from these (response) messages. */
function reachable(roots: readonly DescMessage[]): Set<string> {
  const seen = new Set<string>();
  const visit = (m: DescMessage): void => {
    if (seen.has(m.typeName)) return;
    seen.add(m.typeName);
    for (const f of m.fields) if (f.message !== undefined) visit(f.message);
  };
  roots.forEach(visit);
  return seen;
}

/** Short names ("AccountBalance") where unique, full names where two packages share one. */
function componentNames(typeNames: readonly string[], reserved: readonly string[]): { name(typeName: string): string } {
  const short = (t: string) => t.slice(t.lastIndexOf(".") + 1);
  const counts = new Map<string, number>();
  for (const t of typeNames) counts.set(short(t), (counts.get(short(t)) ?? 0) + 1);
  for (const r of reserved) counts.set(r, (counts.get(r) ?? 0) + 1);
  return { name: (t) => (counts.get(short(t)) === 1 ? short(t) : t) };
}

function findErrorReasonEnum(enums: ReadonlyMap<string, DescEnum>, typeName: string | undefined): DescEnum | undefined {
  if (typeName !== undefined) {
    const e = enums.get(typeName);
    if (e === undefined) throw new Error(`error_reason_enum ${typeName} not found`);
    return e;
  }
  return [...enums.values()].find((e) => e.name === "ErrorReason");
}

/** Error codes travel upper case without the enum's prefix ("ERROR_REASON_NOT_FOUND" -> "NOT_FOUND"). */
function errorReasonSchema(desc: DescEnum): JsonSchema {
  const codes = desc.values.filter((v) => !(v.number === 0 && zeroIsNull(desc))).map((v) => restEnumName(desc, v.name).toUpperCase());
  return withDescription({ type: "string", enum: codes }, commentText(desc));
}

function byKey<T>(a: [string, T], b: [string, T]): number {
  return a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0;
}
