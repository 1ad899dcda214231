import http from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../testing/server.js";

// Browser pages on another origin (CORS_ALLOWED_ORIGINS): preflights answered, answers
// readable by the allowed origins only, credentials as headers and never cookies.

const BASE = "/bridge-payment/account-balance";
const APP = "https://app.example.com";

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A raw HTTP/1.1 request, so that Origin and the preflight headers go as written. */
function request(port: number, method: string, path: string, headers: Record<string, string>, body?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, method, path, headers }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (text += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

const preflight = (port: number, path: string, origin: string, method = "POST") =>
  request(port, "OPTIONS", path, {
    origin,
    "access-control-request-method": method,
    "access-control-request-headers": "content-type, x-session-id, idempotency-key",
  });

let server: TestServer;
let plain: TestServer;
let sid: string;

beforeAll(async () => {
  [server, plain] = await Promise.all([startTestServer({ CORS_ALLOWED_ORIGINS: `${APP}, http://localhost:5173` }), startTestServer()]);
  sid = await server.mintSession("cors-user");
});

afterAll(async () => {
  await Promise.all([server?.close(), plain?.close()]);
});

describe("CORS_ALLOWED_ORIGINS set", () => {
  it("answers an allowed origin's preflight: its methods and the API's headers, never credentials", async () => {
    for (const path of [`${BASE}/me/balances`, "/accountbalance.v1.AccountBalanceService/ListMyBalances"]) {
      const r = await preflight(server.port, path, APP);
      expect(r.status).toBe(204);
      expect(r.headers["access-control-allow-origin"]).toBe(APP);
      expect(r.headers["access-control-allow-methods"]).toBe("GET, POST, PUT, DELETE");
      const allowed = String(r.headers["access-control-allow-headers"]).toLowerCase().split(/,\s*/);
      for (const h of ["content-type", "x-session-id", "authorization", "idempotency-key", "connect-protocol-version", "x-grpc-web"]) expect(allowed).toContain(h);
      expect(r.headers["access-control-allow-credentials"]).toBeUndefined();
      expect(r.headers.vary).toContain("Origin");
    }
  });

  it("never lets a page send the gateway's trusted X-User-ID / X-User-Type headers", async () => {
    const r = await preflight(server.port, `${BASE}/me/balances`, APP);
    const allowed = String(r.headers["access-control-allow-headers"]).toLowerCase().split(/,\s*/);
    expect(allowed).not.toContain("x-user-id");
    expect(allowed).not.toContain("x-user-type");
    // And an answer without Origin still varies by it, for shared caches.
    const plainGet = await request(server.port, "GET", "/healthz", {});
    expect(plainGet.headers.vary).toContain("Origin");
  });

  it("lets an allowed page read REST and Connect answers, gRPC status headers included", async () => {
    const rest = await request(server.port, "GET", `${BASE}/me/balances`, { origin: APP, "x-session-id": sid });
    expect(rest.status).toBe(200);
    expect(JSON.parse(rest.body)).toMatchObject({ success: true, data: [] });
    expect(rest.headers["access-control-allow-origin"]).toBe(APP);
    expect(rest.headers["access-control-allow-credentials"]).toBeUndefined();

    const created = await request(
      server.port,
      "POST",
      "/accountbalance.v1.AccountBalanceService/CreateBalance",
      { origin: "http://localhost:5173", "content-type": "application/json", "x-session-id": sid },
      JSON.stringify({ currency: "EUR" }),
    );
    expect(created.status).toBe(200);
    expect(created.headers["access-control-allow-origin"]).toBe("http://localhost:5173");
    expect(String(created.headers["access-control-expose-headers"]).toLowerCase()).toContain("grpc-status");
  });

  it("gives another origin nothing to read: no allow headers on its preflight or its answers", async () => {
    const r = await preflight(server.port, `${BASE}/me/balances`, "https://evil.example");
    expect(r.status).toBe(204);
    expect(r.headers["access-control-allow-origin"]).toBeUndefined();
    expect(r.headers["access-control-allow-headers"]).toBeUndefined();
    const get = await request(server.port, "GET", `${BASE}/me/balances`, { origin: "https://evil.example", "x-session-id": sid });
    expect(get.headers["access-control-allow-origin"]).toBeUndefined();
    // A near miss is another origin.
    const near = await preflight(server.port, `${BASE}/me/balances`, `${APP}:8443`);
    expect(near.headers["access-control-allow-origin"]).toBeUndefined();
  });
});

describe("CORS_ALLOWED_ORIGINS unset (the default)", () => {
  it("sends no CORS header, and a preflight gets no permission", async () => {
    const r = await preflight(plain.port, `${BASE}/me/balances`, APP);
    expect(r.headers["access-control-allow-origin"]).toBeUndefined();
    expect(r.status).not.toBe(204);
    const get = await request(plain.port, "GET", `${BASE}/me/balances`, { origin: APP, "x-session-id": await plain.mintSession("cors-plain") });
    expect(get.status).toBe(200);
    expect(get.headers["access-control-allow-origin"]).toBeUndefined();
  });
});
