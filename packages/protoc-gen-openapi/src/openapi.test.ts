// The plugin run on the real contract (proto/accountbalance/v1), compiled by buf exactly as
// the build compiles it. Needs packages/proto's third_party folder (its `generate` task).
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { CodeGeneratorRequestSchema, CodeGeneratorResponseSchema, FileDescriptorSetSchema, type FileDescriptorSet } from "@bufbuild/protobuf/wkt";
import { Ajv2020 } from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { beforeAll, describe, expect, it } from "vitest";
import { protocGenOpenApi } from "./plugin.js";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "../../..");
const require = createRequire(import.meta.url);
const BASE = "/bridge-payment/account-balance";

type Doc = Record<string, any>;

let descriptors: FileDescriptorSet;
let doc: Doc;

function request(parameter: string) {
  return create(CodeGeneratorRequestSchema, {
    fileToGenerate: descriptors.file.filter((f) => f.name.startsWith("accountbalance/")).map((f) => f.name),
    protoFile: descriptors.file,
    parameter,
  });
}

function run(parameter: string): Doc {
  const res = protocGenOpenApi.run(request(parameter));
  expect(res.error ?? "").toBe("");
  expect(res.file.map((f) => f.name)).toEqual(["openapi.json"]);
  return JSON.parse(res.file[0]!.content) as Doc;
}

beforeAll(() => {
  const dir = mkdtempSync(join(tmpdir(), "openapi-test-"));
  try {
    const out = join(dir, "contract.binpb");
    const buf = require.resolve("@bufbuild/buf/bin/buf");
    execFileSync(process.execPath, [buf, "build", "--as-file-descriptor-set", "-o", out], { cwd: repo, stdio: "pipe" });
    descriptors = fromBinary(FileDescriptorSetSchema, readFileSync(out));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  doc = run(`base_path=${BASE},title=Account Balance REST API,version=v1`);
});

/** The spec's 14 routes (section 2): RPC name, HTTP method, path under the base path. */
const specRoutes = [
  ["ListMyBalances", "get", "/me/balances"],
  ["GetMyTotalBalance", "get", "/me/total"],
  ["ListMyTransactions", "get", "/me/transactions"],
  ["GetBalance", "get", "/{id}"],
  ["CreateBalance", "post", ""],
  ["UpdateBalance", "put", "/{id}"],
  ["CloseBalance", "delete", "/{id}"],
  ["CreditBalance", "post", "/{id}/credit"],
  ["DebitBalance", "post", "/{id}/debit"],
  ["ListBalanceTransactions", "get", "/{id}/transactions"],
  ["GetBalanceStatistics", "get", "/{id}/statistics"],
  ["ListUserBalances", "get", "/users/{user_id}/balances"],
  ["GetUserTotalBalance", "get", "/users/{user_id}/total"],
  ["ListExpiringBalances", "get", "/expiring"],
] as const;

function op(name: string): Doc {
  const [, verb, path] = specRoutes.find((r) => r[0] === name)!;
  return doc.paths[BASE + path][verb];
}

function param(o: Doc, name: string): Doc {
  const p = (o.parameters as Doc[]).find((x) => x.name === name);
  expect(p, `parameter ${name} of ${o.operationId}`).toBeDefined();
  return p!;
}

/** A schema with every $ref resolved against the document (one level). */
function deref(s: Doc): Doc {
  if (typeof s.$ref !== "string") return s;
  const parts = (s.$ref as string).replace(/^#\//, "").split("/");
  return parts.reduce((o: Doc, k) => o[k], doc);
}

describe("protoc-gen-openapi on the account-balance contract", () => {
  it("is an OpenAPI 3.1 document with every REST route of the spec, and no other", () => {
    expect(doc.openapi).toBe("3.1.0");
    expect(doc.info).toMatchObject({ title: "Account Balance REST API", version: "v1" });
    for (const [name, verb, path] of specRoutes) {
      expect(doc.paths[BASE + path]?.[verb]?.operationId, `${verb.toUpperCase()} ${BASE}${path}`).toBe(name);
    }
    const all = Object.entries(doc.paths as Doc).flatMap(([p, item]) => Object.keys(item as Doc).map((v) => `${v} ${p}`));
    expect(all.sort()).toEqual(specRoutes.map(([, v, p]) => `${v} ${BASE}${p}`).sort());
    expect(doc.tags.map((t: Doc) => t.name).sort()).toEqual(["AccountBalanceAdminService", "AccountBalanceService"]);
    expect(op("CreditBalance").tags).toEqual(["AccountBalanceService"]);
    expect(op("ListExpiringBalances").tags).toEqual(["AccountBalanceAdminService"]);
    // Comments of the contract become descriptions.
    expect(op("DebitBalance").description).toContain("INSUFFICIENT_BALANCE");
    expect(op("GetMyTotalBalance").summary).toBe("Get my total balance");
  });

  it("types path and query parameters by the field they fill, with the contract's rules", () => {
    const id = param(op("GetBalance"), "id");
    expect(id).toMatchObject({ in: "path", required: true, schema: { type: "string", pattern: "^bal_[0-9A-HJKMNP-TV-Z]{26}$" } });
    expect(param(op("ListUserBalances"), "user_id")).toMatchObject({ in: "path", required: true, schema: { minLength: 1, maxLength: 128 } });

    const list = op("ListMyBalances");
    expect(list.parameters.map((p: Doc) => p.name)).toEqual(["limit", "page", "reference_code", "balance_type", "status", "organization_id", "project_id", "currency"]);
    expect(param(list, "limit")).toMatchObject({ in: "query", schema: { type: "integer", format: "int32", minimum: 1, maximum: 1000 } });
    expect(param(list, "limit").required).toBeUndefined();
    expect(param(list, "page").schema).toMatchObject({ minimum: 1, maximum: 1000000 });
    expect(param(list, "balance_type").schema).toEqual({ type: "string", enum: ["general", "credits", "promotional", "refund"] });
    expect(param(list, "status").schema).toEqual({ type: "string", enum: ["active", "suspended", "expired", "closed"] });
    expect(param(list, "currency").schema).toEqual({ type: "string", pattern: "^[A-Z]{3}$" });

    const txs = op("ListMyTransactions");
    expect(param(txs, "limit").schema).toMatchObject({ minimum: 1, maximum: 500 });
    expect(param(txs, "from").schema).toEqual({ type: "string", format: "date-time" });
    expect(param(txs, "transaction_type").schema.enum).toEqual(["credit", "debit", "transfer", "expiration", "adjustment"]);
    expect(param(op("ListBalanceTransactions"), "limit").schema).toMatchObject({ maximum: 500 });
    expect(param(op("ListExpiringBalances"), "within_days").schema).toMatchObject({ type: "integer", maximum: 3650 });
    // Path fields are not query parameters too.
    expect(op("ListBalanceTransactions").parameters.filter((p: Doc) => p.name === "id")).toHaveLength(1);
    // Mutating routes take the Idempotency-Key header; reads do not.
    expect(param(op("CreditBalance"), "Idempotency-Key")).toMatchObject({ in: "header", schema: { minLength: 1, maxLength: 255 } });
    expect(param(op("CloseBalance"), "Idempotency-Key").in).toBe("header");
    expect(op("GetBalance").parameters.map((p: Doc) => p.name)).toEqual(["id"]);
  });

  it("describes JSON bodies as the request message minus the path fields, with validation keywords", () => {
    for (const name of ["GetBalance", "ListMyBalances", "CloseBalance", "ListExpiringBalances"]) expect(op(name).requestBody).toBeUndefined();

    const create = op("CreateBalance").requestBody;
    expect(create.required).toBe(true);
    const createSchema = deref(create.content["application/json"].schema);
    expect(Object.keys(createSchema.properties)).toEqual([
      "user_id", "organization_id", "project_id", "customer_id", "balance_type", "balance_cents",
      "currency", "reference_code", "expires_at", "status", "metadata", "idempotency_key",
    ]);
    expect(createSchema.required).toBeUndefined();
    expect(createSchema.properties.balance_cents).toMatchObject({ type: "integer", format: "int64", minimum: 0, maximum: 9007199254740991 });
    expect(createSchema.properties.currency).toMatchObject({ type: ["string", "null"], pattern: "^[A-Z]{3}$" });
    // not_in: [BALANCE_STATUS_EXPIRED]: a balance cannot be created expired.
    expect(createSchema.properties.status.enum).toEqual(["active", "suspended", "closed", null]);
    expect(createSchema.properties.metadata).toMatchObject({
      type: "object",
      maxProperties: 50,
      propertyNames: { minLength: 1, maxLength: 64 },
      additionalProperties: { type: "string", maxLength: 1024 },
    });
    expect(createSchema.properties.expires_at).toMatchObject({ type: ["string", "null"], format: "date-time" });

    const credit = op("CreditBalance").requestBody.content["application/json"].schema;
    expect(Object.keys(credit.properties)).toEqual(["amount_cents", "description", "reference_code", "metadata", "idempotency_key"]);
    expect(credit.properties.amount_cents).toMatchObject({ type: "integer", format: "int64", minimum: 1, maximum: 9007199254740991 });
    expect(credit.properties.description).toMatchObject({ maxLength: 500 });
    // No presence, and gte 1 refuses the zero an absent field reads as: a body must carry it.
    expect(credit.required).toEqual(["amount_cents"]);
    const debit = op("DebitBalance").requestBody.content["application/json"].schema;
    expect(debit.required).toEqual(["amount_cents"]);
    expect(debit.properties.allow_negative).toEqual({ type: "boolean", description: expect.any(String) });
    expect(debit.properties.id).toBeUndefined();

    const update = op("UpdateBalance").requestBody.content["application/json"].schema;
    expect(Object.keys(update.properties)).toEqual(["status", "expires_at", "metadata", "idempotency_key", "clear_expires_at"]);
    expect(update.properties.clear_expires_at).toMatchObject({ type: "boolean" });
    expect(update.properties.metadata).toMatchObject({ type: ["object", "null"] });
  });

  it("answers 201 on create and 200 elsewhere, inside the {success: true} envelope", () => {
    for (const [name] of specRoutes) {
      const codes = Object.keys(op(name).responses);
      if (name === "CreateBalance") {
        expect(codes).toContain("201");
        expect(codes).not.toContain("200");
      } else {
        expect(codes, name).toContain("200");
        expect(codes).not.toContain("201");
      }
    }
    const created = op("CreateBalance").responses["201"].content["application/json"].schema;
    expect(created.allOf).toEqual([{ $ref: "#/components/schemas/SuccessEnvelope" }, { $ref: "#/components/schemas/CreateBalanceResponse" }]);
    expect(doc.components.schemas.SuccessEnvelope.properties.success).toEqual({ type: "boolean", const: true });
    const list = doc.components.schemas.ListMyBalancesResponse;
    expect(list.required).toEqual(["data", "meta"]);
    expect(list.properties.data).toEqual({ type: "array", items: { $ref: "#/components/schemas/AccountBalance" } });
    expect(doc.components.schemas.PageMeta.required).toEqual(["page", "limit", "total", "hasMore"]);
  });

  it("renders records as the gateway does: every field present, absent values null, int64 integers", () => {
    const b = doc.components.schemas.AccountBalance;
    expect(b.required).toHaveLength(15);
    expect(b.properties.balance_cents).toMatchObject({ type: "integer", format: "int64" });
    expect(b.properties.organization_id.type).toEqual(["string", "null"]);
    expect(b.properties.balance_type).toEqual({ anyOf: [{ $ref: "#/components/schemas/BalanceType" }, { type: "null" }] });
    expect(b.properties.expires_at).toEqual({ type: ["string", "null"], format: "date-time" });
    expect(b.properties.metadata).toEqual({ type: "object", additionalProperties: { type: "string" } });
    expect(doc.components.schemas.BalanceType).toMatchObject({ type: "string", enum: ["general", "credits", "promotional", "refund"] });
    expect(doc.components.schemas.Movement.properties.balance).toEqual({ anyOf: [{ $ref: "#/components/schemas/AccountBalance" }, { type: "null" }] });
    for (const name of ["AccountTransaction", "BalanceTotal", "BalanceStatistics", "CurrencyTotal", "TypeTotal", "TransactionType", "TransactionStatus", "BalanceStatus"]) {
      expect(doc.components.schemas[name], name).toBeDefined();
    }
  });

  it("documents the error shape and the statuses of spec section 4", () => {
    const err = doc.components.schemas.ErrorResponse;
    expect(err.required).toEqual(["success", "error", "code", "details"]);
    expect(err.properties.success).toEqual({ type: "boolean", const: false });
    expect(err.properties.details.type).toEqual(["object", "null"]);
    const codes = deref(err.properties.code).enum as string[];
    for (const c of ["VALIDATION_FAILED", "UNAUTHENTICATED", "FORBIDDEN", "NOT_FOUND", "MODULE_DISABLED", "INSUFFICIENT_BALANCE", "BALANCE_NOT_ACTIVE", "BALANCE_EXPIRED", "AMOUNT_OUT_OF_RANGE", "IDEMPOTENCY_KEY_REUSED", "DUPLICATE_BALANCE", "BALANCE_NOT_EMPTY"]) {
      expect(codes).toContain(c);
    }
    expect(codes).not.toContain("UNSPECIFIED");
    for (const [name, verb] of specRoutes) {
      const r = op(name).responses;
      for (const s of ["400", "401", "403", "404", "429", "503", "504"]) expect(r[s], `${name} ${s}`).toBeDefined();
      const hasBody = op(name).requestBody !== undefined;
      expect(r["413"] !== undefined, `${name} 413`).toBe(hasBody);
      expect(r["415"] !== undefined, `${name} 415`).toBe(hasBody);
      expect(r["409"] !== undefined, `${name} 409`).toBe(verb !== "get");
      expect(deref(r["404"]).content["application/json"].schema).toEqual({ $ref: "#/components/schemas/ErrorResponse" });
    }
  });

  it("declares every way to send credentials, any one of them accepted", () => {
    expect(doc.components.securitySchemes).toMatchObject({
      sessionHeader: { type: "apiKey", in: "header", name: "X-Session-ID" },
      bearerAuth: { type: "http", scheme: "bearer" },
      sessionQuery: { type: "apiKey", in: "query", name: "session_id" },
      sessionCookie: { type: "apiKey", in: "cookie", name: "session_id" },
    });
    expect(doc.security).toEqual([{ sessionHeader: [] }, { bearerAuth: [] }, { sessionQuery: [] }, { sessionCookie: [] }]);
  });

  it("has schemas a strict JSON Schema 2020-12 validator compiles, and that accept and refuse what the server does", () => {
    const ajv = new Ajv2020({ strict: true, allowUnionTypes: true });
    addFormats.default(ajv);
    // Component refs point into the OpenAPI document; give ajv the schemas under $defs.
    const rewritten = JSON.parse(JSON.stringify(doc.components.schemas).replaceAll("#/components/schemas/", "openapi#/$defs/"));
    ajv.addSchema({ $id: "openapi", $defs: rewritten });
    const validate = (name: string) => ajv.compile({ $ref: `openapi#/$defs/${name}` });
    for (const name of Object.keys(doc.components.schemas)) validate(name);

    const createBody = validate("CreateBalanceRequest");
    expect(createBody({ currency: "EUR", balance_type: "credits", metadata: { source: "signup" } })).toBe(true);
    expect(createBody({ currency: "eur" })).toBe(false);
    expect(createBody({ status: "expired" })).toBe(false);
    expect(createBody({ balance_cents: -1 })).toBe(false);
    expect(createBody({ metadata: Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`k${i}`, "v"])) })).toBe(false);

    const balance = {
      id: "bal_01JDKQ7Z8X4N5M6P7Q8R9S0T1V", user_id: "u1", organization_id: null, project_id: null, customer_id: null,
      balance_type: "general", balance_cents: 1250, currency: "USD", reference_code: null, status: "active",
      expires_at: null, metadata: {}, version: 1, created_at: "2025-11-26T09:00:00Z", updated_at: "2025-11-26T09:00:00Z",
    };
    const envelope = ajv.compile({ allOf: [{ $ref: "openapi#/$defs/SuccessEnvelope" }, { $ref: "openapi#/$defs/GetBalanceResponse" }] });
    expect(envelope({ success: true, data: balance })).toBe(true);
    expect(envelope({ success: true, data: { ...balance, balance_cents: "1250" } })).toBe(false);
    expect(envelope({ success: true, data: { ...balance, balance_type: "BALANCE_TYPE_GENERAL" } })).toBe(false);
    const { currency: _c, ...withoutCurrency } = balance;
    expect(envelope({ success: true, data: withoutCurrency })).toBe(false);
    expect(envelope({ success: false, data: balance })).toBe(false);
    expect(validate("ErrorResponse")({ success: false, error: "no", code: "NOT_FOUND", details: null })).toBe(true);
    expect(validate("ErrorResponse")({ success: false, error: "no", code: "not_found", details: null })).toBe(false);
  });

  it("takes its options: base path, 201 methods", () => {
    const root = run("base_path=/,created=UpdateBalance");
    expect(root.paths["/"].post.responses["200"]).toBeDefined();
    expect(root.paths["/{id}"].put.responses["201"]).toBeDefined();
    expect(root["x-rest-base-path"]).toBe("");
    const other = run("base_path=api/v2/");
    expect(Object.keys(other.paths)).toContain("/api/v2");
    expect(Object.keys(other.paths)).toContain("/api/v2/{id}/credit");
    expect(other.paths["/api/v2"].post.responses["201"]).toBeDefined();
    expect(() => protocGenOpenApi.run(request("nonsense=1"))).toThrow(/nonsense/);
  });

  it("runs as a protoc plugin executable (CodeGeneratorRequest on stdin)", () => {
    const main = resolve(here, "../dist/main.js");
    const out = spawnSync(process.execPath, [main], { input: toBinary(CodeGeneratorRequestSchema, request(`base_path=${BASE}`)), maxBuffer: 64 * 1024 * 1024 });
    expect(out.status).toBe(0);
    const res = fromBinary(CodeGeneratorResponseSchema, out.stdout);
    expect(res.file.map((f) => f.name)).toEqual(["openapi.json"]);
    expect(JSON.parse(res.file[0]!.content)).toEqual(doc);
  });
});
