import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { startTestServer, type TestServer } from "../testing/server.js";

// The OpenAPI document the server serves (generated from the contract at build time) against
// the server itself: every REST route of the spec is in it, under the server's own base path,
// and real responses (successes and refusals) validate against its schemas. The reference page
// at /docs loads, with every asset from this server.

/** Not the default, so the test also proves the document follows REST_BASE_PATH. */
const BASE = "/api/account-balance";

type Doc = Record<string, any>;

let server: TestServer;
let doc: Doc;
let ajv: Ajv2020;
let owner: Record<string, string>;
let service: Record<string, string>;
const OWNER = "openapi-owner";

/** The spec's 14 routes (section 2): RPC, HTTP method, path under the base path. */
const SPEC_ROUTES = [
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

type Rpc = (typeof SPEC_ROUTES)[number][0];

beforeAll(async () => {
  server = await startTestServer({ REST_BASE_PATH: BASE });
  const res = await fetch(`${server.baseUrl}/openapi.json`);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toMatch(/^application\/json/);
  doc = (await res.json()) as Doc;
  ajv = new Ajv2020({ strict: true, allowUnionTypes: true, allErrors: true });
  addFormats.default(ajv);
  // Component refs point into the OpenAPI document; ajv gets the components as $defs.
  const schemas = JSON.parse(JSON.stringify(doc.components.schemas).replaceAll("#/components/schemas/", "openapi#/$defs/"));
  ajv.addSchema({ $id: "openapi", $defs: schemas });
  owner = { "x-session-id": await server.mintSession(OWNER) };
  service = { authorization: `Bearer ${server.serviceToken}` };
});

afterAll(async () => {
  await server?.close();
});

function operation(rpc: Rpc): { op: Doc; path: string; verb: string } {
  const [, verb, path] = SPEC_ROUTES.find((r) => r[0] === rpc)!;
  const op = doc.paths[BASE + path]?.[verb];
  expect(op, `${verb.toUpperCase()} ${BASE}${path}`).toBeDefined();
  return { op, path, verb };
}

const validators = new Map<string, ValidateFunction>();

/** Asserts the body validates against the schema the document gives this operation and status. */
function expectDocumented(rpc: Rpc, status: number, body: unknown): void {
  const { op } = operation(rpc);
  let response = op.responses[String(status)];
  expect(response, `${rpc}: status ${status} is documented`).toBeDefined();
  if (typeof response.$ref === "string") response = doc.components.responses[response.$ref.split("/").pop()];
  const schema = response.content["application/json"].schema;
  const key = JSON.stringify(schema);
  let validate = validators.get(key);
  if (validate === undefined) {
    validate = ajv.compile(JSON.parse(key.replaceAll("#/components/schemas/", "openapi#/$defs/")));
    validators.set(key, validate);
  }
  const ok = validate(body);
  expect(ok ? [] : validate.errors, `${rpc} ${status}: ${JSON.stringify(body)}`).toEqual([]);
}

/** Calls a route of the spec on the running server and checks the answer against the document. */
async function call(
  rpc: Rpc,
  expected: number,
  opts: { params?: Record<string, string>; query?: Record<string, string>; body?: unknown; headers?: Record<string, string> } = {},
): Promise<Doc> {
  const { path, verb } = operation(rpc);
  const filled = path.replace(/\{(\w+)\}/g, (_, name: string) => encodeURIComponent(opts.params?.[name] ?? ""));
  const qs = opts.query ? `?${new URLSearchParams(opts.query)}` : "";
  const headers: Record<string, string> = { ...opts.headers };
  if (opts.body !== undefined) headers["content-type"] ??= "application/json";
  const res = await fetch(`${server.baseUrl}${BASE}${filled}${qs}`, {
    method: verb.toUpperCase(),
    headers,
    body: opts.body === undefined ? undefined : typeof opts.body === "string" ? opts.body : JSON.stringify(opts.body),
  });
  const json = (await res.json()) as Doc;
  expect(res.status, `${rpc}: ${JSON.stringify(json)}`).toBe(expected);
  expectDocumented(rpc, res.status, json);
  return json;
}

describe("the served OpenAPI document", () => {
  it("has every REST route of the spec, under the server's base path, and no other", () => {
    expect(doc.openapi).toBe("3.1.0");
    for (const [rpc] of SPEC_ROUTES) expect(operation(rpc).op.operationId).toBe(rpc);
    const all = Object.entries(doc.paths as Doc).flatMap(([p, item]) => Object.keys(item as Doc).map((v) => `${v} ${p}`));
    expect(all.sort()).toEqual(SPEC_ROUTES.map(([, v, p]) => `${v} ${BASE}${p}`).sort());
    expect(doc.servers).toEqual([expect.objectContaining({ url: "/" })]);
    expect(Object.keys(doc.components.securitySchemes).sort()).toEqual(["bearerAuth", "sessionCookie", "sessionHeader", "sessionQuery"]);
  });

  it("describes the real answers of every route: successes with their statuses, and refusals", async () => {
    const created = await call("CreateBalance", 201, {
      body: { currency: "EUR", balance_type: "credits", metadata: { source: "openapi-test" } },
      headers: owner,
    });
    const id = created.data.id as string;
    expect(created.data).toMatchObject({ user_id: OWNER, balance_cents: 0, currency: "EUR", balance_type: "credits", status: "active" });

    const got = await call("GetBalance", 200, { params: { id }, headers: owner });
    expect(got.data.id).toBe(id);
    const listed = await call("ListMyBalances", 200, { query: { limit: "10", currency: "EUR" }, headers: owner });
    expect(listed.meta).toMatchObject({ page: 1, limit: 10, total: 1, hasMore: false });
    await call("UpdateBalance", 200, { params: { id }, body: { metadata: { touched: "yes" } }, headers: owner });

    const credited = await call("CreditBalance", 200, {
      params: { id },
      body: { amount_cents: 1500, description: "top up", metadata: { by: "test" } },
      headers: { ...service, "idempotency-key": "openapi-credit-1" },
    });
    expect(credited.data.balance.balance_cents).toBe(1500);
    expect(credited.data.transaction).toMatchObject({ transaction_type: "credit", amount_cents: 1500, balance_after_cents: 1500 });
    const debited = await call("DebitBalance", 200, { params: { id }, body: { amount_cents: 1500 }, headers: owner });
    expect(debited.data.balance.balance_cents).toBe(0);

    const txs = await call("ListBalanceTransactions", 200, { params: { id }, query: { limit: "5" }, headers: owner });
    expect(txs.data).toHaveLength(2);
    await call("ListMyTransactions", 200, { query: { transaction_type: "debit" }, headers: owner });
    await call("GetBalanceStatistics", 200, { params: { id }, headers: owner });
    await call("GetMyTotalBalance", 200, { query: { currency: "EUR" }, headers: owner });
    await call("ListUserBalances", 200, { params: { user_id: OWNER }, headers: service });
    await call("GetUserTotalBalance", 200, { params: { user_id: OWNER }, headers: service });
    await call("ListExpiringBalances", 200, { query: { within_days: "30" }, headers: service });

    const closed = await call("CloseBalance", 200, { params: { id }, headers: owner });
    expect(closed.data.status).toBe("closed");

    // Refusals: each status the document promises, with the error shape.
    const missing = await call("GetBalance", 404, { params: { id: "bal_01J0000000000000000000000Z" }, headers: owner });
    expect(missing).toMatchObject({ success: false, code: "NOT_FOUND" });
    const invalid = await call("CreateBalance", 400, { body: { currency: "eur" }, headers: owner });
    expect(invalid).toMatchObject({ success: false, code: "VALIDATION_FAILED" });
    const badQuery = await call("ListMyBalances", 400, { query: { limit: "ten" }, headers: owner });
    expect(badQuery.code).toBe("VALIDATION_FAILED");
    const anonymous = await call("ListMyBalances", 401, {});
    expect(anonymous.code).toBe("UNAUTHENTICATED");
    const forbidden = await call("ListExpiringBalances", 403, { headers: owner });
    expect(forbidden.code).toBe("FORBIDDEN");
    await call("CreateBalance", 415, { body: "currency=EUR", headers: { ...owner, "content-type": "application/x-www-form-urlencoded" } });
  });
});

describe("the reference page", () => {
  it("is HTML whose scripts, styles and icons all come from this server", async () => {
    const res = await fetch(`${server.baseUrl}/docs`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/html/);
    const csp = res.headers.get("content-security-policy") ?? "";
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("default-src 'none'");
    const html = await res.text();
    expect(html).not.toMatch(/(src|href)=["']?(https?:)?\/\//i);
    expect(html).not.toMatch(/<script>(?!\s*<\/script>)/); // no inline script
    const refs = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
    expect(refs).toEqual(expect.arrayContaining(["/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css", "/docs/init.js"]));
    for (const ref of refs) {
      const asset = await fetch(new URL(ref, server.baseUrl));
      expect(asset.status, ref).toBe(200);
      const body = Buffer.from(await asset.arrayBuffer());
      expect(body.length, ref).toBeGreaterThan(0);
      if (ref.endsWith(".js")) expect(asset.headers.get("content-type"), ref).toMatch(/^text\/javascript/);
      if (ref.endsWith(".css")) expect(asset.headers.get("content-type"), ref).toMatch(/^text\/css/);
    }
    const init = await (await fetch(`${server.baseUrl}/docs/init.js`)).text();
    expect(init).toContain('url: "/openapi.json"');
    expect(init).toContain("validatorUrl: null"); // never sends the document to an online validator
    expect((await fetch(`${server.baseUrl}/docs/../package.json`)).status).not.toBe(200);
    expect((await fetch(`${server.baseUrl}/docs/swagger-ui-bundle.js.map`)).status).toBe(404);
    expect((await fetch(`${server.baseUrl}/openapi.json`, { method: "POST" })).status).toBe(405);
  });
});
