import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { startTestServer, randomToken, type TestServer } from "../testing/server.js";
import { startFakeFlowless, type FakeFlowless } from "../testing/fake-flowless.js";
import { createApi, PROTOCOLS, restFetch, type Api } from "../testing/protocols.js";
import { HTTP_RULES } from "../testing/routes.js";
import { expectOk, expectRefused } from "../testing/expect.js";

// AUTH_PROVIDER=flowless end to end: the real server validates sessions against a fake
// Flowless (spec section 5) over HTTP, caches successes, does not retry 401s, retries 5xx.

const BASE = "/bridge-payment/account-balance";
const secret = randomToken(40);
let flowless: FakeFlowless;
let server: TestServer;
let api: Api;
const sid = () => randomBytes(24).toString("base64url");

beforeAll(async () => {
  flowless = await startFakeFlowless(secret);
  server = await startTestServer({
    AUTH_PROVIDER: "flowless",
    FLOWLESS_API_URL: `${flowless.url}/`,
    BRIDGE_VALIDATION_SECRET: secret,
    FLOWLESS_RETRIES: "1",
    FLOWLESS_TIMEOUT_MS: "2000",
  });
  api = createApi(server.port, HTTP_RULES);
});

afterAll(async () => {
  api?.close();
  await server?.close();
  await flowless?.close();
});

describe("AUTH_PROVIDER=flowless", () => {
  it("a valid session is accepted and the validation request is the documented one", async () => {
    const id = sid();
    flowless.sessions.set(id, { userId: "fl-user-1", userType: "customer" });
    const before = flowless.calls.length;
    const res = await restFetch(server.baseUrl, "GET", `${BASE}/me/balances`, { headers: { "x-session-id": id } });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ success: true, data: [], meta: { total: 0 } });
    const calls = flowless.calls.slice(before);
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatchObject({ sessionId: id, bridgeSecret: secret, contentType: "application/json" });
    expect(calls[0]!.body).toMatchObject({ source: "account-balance" });
    expect(typeof (calls[0]!.body as { timestamp: unknown }).timestamp).toBe("number");
  });

  it("10 requests with one session (all protocols) make 1 upstream call: the cache", async () => {
    const id = sid();
    flowless.sessions.set(id, { userId: "fl-user-2", userType: "customer" });
    const before = flowless.calls.length;
    const created = expectOk(await api.call("rest", "CreateBalance", { currency: "EUR" }, { session: id }));
    expect(created.data.user_id).toBe("fl-user-2");
    for (let i = 0; i < 9; i++) {
      const protocol = PROTOCOLS[i % PROTOCOLS.length]!;
      const res = expectOk(await api.call(protocol, "GetBalance", { id: created.data.id }, { session: id }));
      expect(res.data.user_id).toBe("fl-user-2");
    }
    expect(flowless.calls.slice(before).filter((c) => c.sessionId === id)).toHaveLength(1);
  });

  it("concurrent first requests share one upstream call", async () => {
    const id = sid();
    flowless.sessions.set(id, { userId: "fl-user-3", userType: "customer" });
    const results = await Promise.all(Array.from({ length: 8 }, () => api.call("connect-json", "ListMyBalances", {}, { session: id })));
    results.forEach(expectOk);
    expect(flowless.calls.filter((c) => c.sessionId === id)).toHaveLength(1);
  });

  it.each(PROTOCOLS)("a session Flowless answers 401 for -> UNAUTHENTICATED over %s, no retry, nothing cached", async (protocol) => {
    const id = sid();
    const before = flowless.calls.length;
    expectRefused(await api.call(protocol, "ListMyBalances", {}, { session: id }), "UNAUTHENTICATED");
    expectRefused(await api.call(protocol, "ListMyBalances", {}, { session: id }), "UNAUTHENTICATED");
    expect(flowless.calls.slice(before).filter((c) => c.sessionId === id)).toHaveLength(2);
  });

  it("the role comes from the Flowless user_type: an admin may use the admin service", async () => {
    const admin = sid();
    flowless.sessions.set(admin, { userId: "fl-admin", userType: "admin" });
    const customer = sid();
    flowless.sessions.set(customer, { userId: "fl-cust", userType: "customer" });
    expectOk(await api.call("grpc", "ListUserBalances", { user_id: "fl-user-2" }, { session: admin }));
    expectRefused(await api.call("grpc", "ListUserBalances", { user_id: "fl-user-2" }, { session: customer }), "FORBIDDEN");
  });

  it("Flowless failing with 5xx is retried, then the caller gets 503 UNAVAILABLE (not 401, not 500)", async () => {
    const id = sid();
    flowless.sessions.set(id, { userId: "fl-user-4", userType: "customer", failWith: 502 });
    const before = flowless.calls.length;
    const res = await restFetch(server.baseUrl, "GET", `${BASE}/me/balances`, { headers: { "x-session-id": id } });
    expect(res.status).toBe(503);
    expect(res.body).toMatchObject({ success: false, code: "UNAVAILABLE" });
    // FLOWLESS_RETRIES=1: the first attempt and one retry.
    expect(flowless.calls.slice(before).filter((c) => c.sessionId === id)).toHaveLength(2);
  });

  it("an expired session in Flowless' reply is refused", async () => {
    const id = sid();
    flowless.sessions.set(id, { userId: "fl-user-5", userType: "customer", expiresAt: new Date(Date.now() - 1000) });
    expectRefused(await api.call("connect-binary", "ListMyBalances", {}, { session: id }), "UNAUTHENTICATED");
  });

  it("the logs carry neither the bridge secret nor a full session id", () => {
    const text = server.logs.join("\n");
    expect(server.logs.length).toBeGreaterThan(0);
    expect(text).not.toContain(secret);
    expect(text).not.toContain(server.serviceToken);
    for (const call of flowless.calls) {
      if (call.sessionId) expect(text.includes(call.sessionId), "a full session id was logged").toBe(false);
    }
  });
});
