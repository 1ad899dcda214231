import * as http from "node:http";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { Code, ConnectError, createClient, type ConnectRouter, type Transport } from "@connectrpc/connect";
import { connectNodeAdapter, createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { AccountBalanceService } from "@account-balance/proto/accountbalance/v1/account_balance_service_pb.js";
import { AccountBalanceAdminService } from "@account-balance/proto/accountbalance/v1/account_balance_admin_service_pb.js";
import { Health, HealthCheckResponse_ServingStatus } from "@account-balance/proto/grpc/health/v1/health_pb.js";
import { ErrorInfoSchema } from "@account-balance/proto/google/rpc/error_details_pb.js";
import { callerKey, type Caller } from "./caller.js";
import { createAuthInterceptor, logStartupWarnings, type AuthOptions } from "./interceptor.js";
import { createLocalProvider, type LocalSession } from "./local.js";
import type { SessionProvider } from "./session.js";

const HOUR = 3600_000;
const SERVICE_TOKEN = "svc-token-0123456789abcdef0123456789abcdef";

/** The local sessions the tests log in with (an in-memory stand-in for the ledger's session table). */
const sessions = new Map<string, LocalSession>([
  ["sess-customer", { userId: "u-customer", userType: "customer", expiresAt: new Date(Date.now() + HOUR) }],
  ["sess-admin", { userId: "u-admin", userType: "admin", expiresAt: new Date(Date.now() + HOUR) }],
  ["sess-manager", { userId: "u-manager", userType: "manager", expiresAt: new Date(Date.now() + HOUR) }],
  ["sess-expired", { userId: "u-old", userType: "customer", expiresAt: new Date(Date.now() - 1000) }],
  ["sess-header", { userId: "u-header", userType: "customer", expiresAt: new Date(Date.now() + HOUR) }],
  ["sess-bearer", { userId: "u-bearer", userType: "customer", expiresAt: new Date(Date.now() + HOUR) }],
  ["sess-query", { userId: "u-query", userType: "customer", expiresAt: new Date(Date.now() + HOUR) }],
  ["sess-cookie", { userId: "u-cookie", userType: "customer", expiresAt: new Date(Date.now() + HOUR) }],
]);
const localProvider = createLocalProvider({ find: async (id) => sessions.get(id) ?? null });

function callerOf(ctx: { values: { get: (key: typeof callerKey) => Caller | undefined } }): Caller {
  const caller = ctx.values.get(callerKey);
  if (caller === undefined) throw new Error("no caller in context");
  return caller;
}

/** Handlers that only echo the caller the interceptor established. */
function routes(router: ConnectRouter): void {
  router.service(AccountBalanceService, {
    getBalance(req, ctx) {
      const c = callerOf(ctx);
      return {
        data: {
          id: req.id,
          userId: c.userId ?? "",
          metadata: { kind: c.kind, role: c.role, isAdmin: String(c.isAdmin) },
        },
      };
    },
  });
  router.service(AccountBalanceAdminService, {
    listUserBalances(req, ctx) {
      const c = callerOf(ctx);
      return {
        data: [{ userId: req.userId, metadata: { kind: c.kind, role: c.role, isAdmin: String(c.isAdmin) } }],
      };
    },
  });
  router.service(Health, {
    check() {
      return { status: HealthCheckResponse_ServingStatus.SERVING };
    },
  });
}

function options(overrides: Partial<AuthOptions> = {}): AuthOptions {
  return {
    enabled: true,
    requireAuth: true,
    allowedRoles: [],
    adminRoles: ["admin", "superadmin"],
    serviceTokens: [SERVICE_TOKEN],
    provider: localProvider,
    adminServices: [AccountBalanceAdminService.typeName],
    guardedServices: [AccountBalanceService.typeName, AccountBalanceAdminService.typeName],
    ...overrides,
  };
}

const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (closers.length > 0) await closers.pop()?.();
});

interface Started {
  baseUrl: string;
  transport: Transport;
}

async function start(overrides: Partial<AuthOptions> = {}): Promise<Started> {
  const handler = connectNodeAdapter({ routes, interceptors: [createAuthInterceptor(options(overrides))] });
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  closers.push(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { baseUrl, transport: createConnectTransport({ baseUrl, httpVersion: "1.1" }) };
}

function clients(transport: Transport) {
  return {
    user: createClient(AccountBalanceService, transport),
    admin: createClient(AccountBalanceAdminService, transport),
    health: createClient(Health, transport),
  };
}

/** The refusal's status code and ErrorInfo reason. */
async function refusalOf(call: Promise<unknown>): Promise<{ code: Code; reason: string | undefined }> {
  try {
    await call;
  } catch (err) {
    const ce = ConnectError.from(err);
    const info = ce.findDetails(ErrorInfoSchema)[0];
    expect(info?.domain).toBe("account-balance");
    return { code: ce.code, reason: info?.reason };
  }
  throw new Error("expected the call to be refused");
}

const withSession = (id: string) => ({ headers: { "X-Session-ID": id } });

describe("auth interceptor: credentials", () => {
  it("refuses a call without credentials as UNAUTHENTICATED (HTTP 401 on Connect)", async () => {
    const { baseUrl, transport } = await start();
    const { user } = clients(transport);
    expect(await refusalOf(user.getBalance({ id: "bal_1" }))).toEqual({
      code: Code.Unauthenticated,
      reason: "UNAUTHENTICATED",
    });
    const res = await fetch(`${baseUrl}/accountbalance.v1.AccountBalanceService/GetBalance`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ id: "bal_1" }),
    });
    expect(res.status).toBe(401);
    const body = (await res.json()) as { code: string };
    expect(body.code).toBe("unauthenticated");
  });

  it("refuses an unknown session and an expired local session", async () => {
    const { user } = clients((await start()).transport);
    for (const id of ["no-such-session", "sess-expired"]) {
      expect(await refusalOf(user.getBalance({ id: "bal_1" }, withSession(id)))).toEqual({
        code: Code.Unauthenticated,
        reason: "UNAUTHENTICATED",
      });
    }
  });

  it("refuses a malformed session id without asking the provider", async () => {
    let asked = 0;
    const provider: SessionProvider = {
      async validate() {
        asked++;
        return { userId: "u", userType: "customer" };
      },
    };
    const { user } = clients((await start({ provider })).transport);
    const tooLong = "x".repeat(2000);
    expect((await refusalOf(user.getBalance({ id: "b" }, withSession(tooLong)))).reason).toBe("UNAUTHENTICATED");
    expect(asked).toBe(0);
  });

  it("puts the session's user in the context as the caller", async () => {
    const { user } = clients((await start()).transport);
    const res = await user.getBalance({ id: "bal_1" }, withSession("sess-customer"));
    expect(res.data?.userId).toBe("u-customer");
    expect(res.data?.metadata).toEqual({ kind: "user", role: "customer", isAdmin: "false" });
  });

  it("answers UNAVAILABLE when the session provider fails", async () => {
    const provider: SessionProvider = {
      validate: () => Promise.reject(new Error("connection refused to db at 10.0.0.1")),
    };
    const { user } = clients((await start({ provider })).transport);
    const err = await user.getBalance({ id: "b" }, withSession("sess-customer")).catch((e: unknown) => e);
    const ce = ConnectError.from(err);
    expect(ce.code).toBe(Code.Unavailable);
    expect(ce.findDetails(ErrorInfoSchema)[0]?.reason).toBe("UNAVAILABLE");
    expect(ce.rawMessage).toBe("session service unavailable");
  });

  it("takes the session id from header, then bearer, then query, then cookie", async () => {
    const { baseUrl, transport } = await start();
    const { user } = clients(transport);
    const all = {
      "X-Session-ID": "sess-header",
      Authorization: "Bearer sess-bearer",
      Cookie: "theme=dark; session_id=sess-cookie",
    };
    const who = async (headers: Record<string, string>, query = "") => {
      // POST with a query string: the query must be read from the URL the server received.
      const res = await fetch(`${baseUrl}/accountbalance.v1.AccountBalanceService/GetBalance${query}`, {
        method: "POST",
        headers: { "Content-Type": "application/json", ...headers },
        body: JSON.stringify({ id: "bal_1" }),
      });
      const body = (await res.json()) as { data?: { userId?: string }; code?: string };
      return body.data?.userId ?? body.code;
    };
    expect(await who(all, "?session_id=sess-query")).toBe("u-header");
    const { "X-Session-ID": _h, ...noHeader } = all;
    expect(await who(noHeader, "?session_id=sess-query")).toBe("u-bearer");
    const { Authorization: _b, ...cookieOnly } = noHeader;
    expect(await who(cookieOnly, "?session_id=sess-query")).toBe("u-query");
    expect(await who(cookieOnly)).toBe("u-cookie");
    // The first source present wins even when it is invalid: no falling through to a valid one.
    expect(await who({ ...all, "X-Session-ID": "bogus" })).toBe("unauthenticated");
    // A Bearer header that cannot be read is such a source too.
    expect(await who({ ...cookieOnly, Authorization: "Bearer a b" }, "?session_id=sess-query")).toBe("unauthenticated");
    expect(await who({ ...cookieOnly, Authorization: "Bearer" })).toBe("unauthenticated");
    // And through the Connect client, with the headers as call options.
    const res = await user.getBalance({ id: "bal_1" }, { headers: { Authorization: "Bearer sess-bearer", Cookie: "session_id=sess-cookie" } });
    expect(res.data?.userId).toBe("u-bearer");
  });

  it("reads x-session-id metadata on gRPC", async () => {
    const handler = connectNodeAdapter({ routes, interceptors: [createAuthInterceptor(options())] });
    const server = http2.createServer(handler);
    const open = new Set<http2.ServerHttp2Session>();
    server.on("session", (s) => {
      open.add(s);
      s.on("close", () => open.delete(s));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const transport = createGrpcTransport({ baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}` });
    closers.push(async () => {
      for (const s of open) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });
    const { user } = clients(transport);
    const res = await user.getBalance({ id: "bal_1" }, { headers: { "x-session-id": "sess-admin" } });
    expect(res.data?.metadata).toEqual({ kind: "user", role: "admin", isAdmin: "true" });
    expect(await refusalOf(user.getBalance({ id: "bal_1" }))).toEqual({
      code: Code.Unauthenticated,
      reason: "UNAUTHENTICATED",
    });
  });
});

describe("auth interceptor: roles and admin services", () => {
  it("refuses a role outside ACCOUNT_BALANCE_ALLOWED_ROLES as FORBIDDEN", async () => {
    const { user } = clients((await start({ allowedRoles: ["customer", "admin"] })).transport);
    expect(await refusalOf(user.getBalance({ id: "b" }, withSession("sess-manager")))).toEqual({
      code: Code.PermissionDenied,
      reason: "FORBIDDEN",
    });
    expect((await user.getBalance({ id: "b" }, withSession("sess-customer"))).data?.userId).toBe("u-customer");
  });

  it("refuses the admin service to a customer and allows it to an admin", async () => {
    const { admin } = clients((await start()).transport);
    expect(await refusalOf(admin.listUserBalances({ userId: "u-x" }, withSession("sess-customer")))).toEqual({
      code: Code.PermissionDenied,
      reason: "FORBIDDEN",
    });
    const res = await admin.listUserBalances({ userId: "u-x" }, withSession("sess-admin"));
    expect(res.data[0]?.metadata).toEqual({ kind: "user", role: "admin", isAdmin: "true" });
  });

  it("accepts a service token as the service caller, with admin rights, whatever the allowed roles", async () => {
    const { admin, user } = clients((await start({ allowedRoles: ["customer"] })).transport);
    const auth = { headers: { Authorization: `Bearer ${SERVICE_TOKEN}` } };
    const res = await admin.listUserBalances({ userId: "u-x" }, auth);
    expect(res.data[0]?.metadata).toEqual({ kind: "service", role: "service", isAdmin: "true" });
    expect((await user.getBalance({ id: "b" }, auth)).data?.userId).toBe("");
    // A bearer that is not a service token is tried as a session id, and fails as one.
    const wrong = { headers: { Authorization: `Bearer ${SERVICE_TOKEN}x` } };
    expect((await refusalOf(admin.listUserBalances({ userId: "u-x" }, wrong))).reason).toBe("UNAUTHENTICATED");
  });
});

describe("auth interceptor: feature flags", () => {
  it("answers MODULE_DISABLED before looking at credentials, and leaves health alone", async () => {
    const { user, admin, health } = clients((await start({ enabled: false })).transport);
    expect(await refusalOf(user.getBalance({ id: "b" }))).toEqual({
      code: Code.Unimplemented,
      reason: "MODULE_DISABLED",
    });
    expect(await refusalOf(admin.listUserBalances({ userId: "u" }, withSession("sess-admin")))).toEqual({
      code: Code.Unimplemented,
      reason: "MODULE_DISABLED",
    });
    expect((await health.check({})).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
  });

  it("passes services outside the module untouched (no credentials needed)", async () => {
    const { health } = clients((await start()).transport);
    expect((await health.check({})).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
  });

  it("with REQUIRE_AUTH=false trusts X-User-ID only when no credential is sent", async () => {
    const { user, admin } = clients((await start({ requireAuth: false })).transport);
    const plain = await user.getBalance({ id: "b" }, { headers: { "X-User-ID": "u-gw" } });
    expect(plain.data?.userId).toBe("u-gw");
    expect(plain.data?.metadata).toEqual({ kind: "user", role: "customer", isAdmin: "false" });

    const asAdmin = await admin.listUserBalances(
      { userId: "u-x" },
      { headers: { "X-User-ID": "u-gw-admin", "X-User-Type": "admin" } },
    );
    expect(asAdmin.data[0]?.metadata).toEqual({ kind: "user", role: "admin", isAdmin: "true" });

    // Neither credential nor trusted header: 401.
    expect((await refusalOf(user.getBalance({ id: "b" }))).reason).toBe("UNAUTHENTICATED");
    // A bad credential is never ignored in favour of the header.
    expect(
      (await refusalOf(user.getBalance({ id: "b" }, { headers: { "X-User-ID": "u-gw", "X-Session-ID": "bogus" } })))
        .reason,
    ).toBe("UNAUTHENTICATED");
    // Nor is a Bearer credential that cannot be read; another scheme is not ours and is ignored.
    for (const authorization of ["Bearer a b", "Bearer", "bearer  "]) {
      expect(
        await refusalOf(user.getBalance({ id: "b" }, { headers: { "X-User-ID": "u-gw", authorization } })),
      ).toEqual({ code: Code.Unauthenticated, reason: "UNAUTHENTICATED" });
    }
    // The trusted header must be a usable user id (the contract's user_id shape).
    for (const bad of [{ "X-User-ID": "a b" }, { "X-User-ID": "x".repeat(129) }, { "X-User-ID": "u-gw", "X-User-Type": "ad min" }]) {
      expect(await refusalOf(user.getBalance({ id: "b" }, { headers: bad }))).toEqual({ code: Code.Unauthenticated, reason: "UNAUTHENTICATED" });
    }
    const basic = await user.getBalance({ id: "b" }, { headers: { "X-User-ID": "u-gw", authorization: "Basic dXNlcjpwdw==" } });
    expect(basic.data?.userId).toBe("u-gw");
    // A valid session still wins over the header.
    const viaSession = await user.getBalance({ id: "b" }, { headers: { "X-User-ID": "u-gw", "X-Session-ID": "sess-customer" } });
    expect(viaSession.data?.userId).toBe("u-customer");
  });

  it("with REQUIRE_AUTH=false refuses two X-User-ID headers, even when the second is empty", async () => {
    const { baseUrl } = await start({ requireAuth: false });
    // Two header lines, as a client library cannot send them: Node joins them as "u-gw, ".
    const status = (values: string[]) =>
      new Promise<number>((resolve, reject) => {
        const req = http.request(`${baseUrl}/accountbalance.v1.AccountBalanceService/GetBalance`, {
          method: "POST",
          headers: { "content-type": "application/json", "x-user-id": values },
        });
        req.on("response", (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on("error", reject);
        req.end('{"id":"b"}');
      });
    expect(await status(["u-gw"])).toBe(200);
    expect(await status(["u-gw", ""])).toBe(401);
    expect(await status(["u-gw", "u-other"])).toBe(401);
  });

  it("ignores X-User-ID when REQUIRE_AUTH is true", async () => {
    const { user } = clients((await start()).transport);
    expect(
      (await refusalOf(user.getBalance({ id: "b" }, { headers: { "X-User-ID": "u-gw", "X-User-Type": "admin" } })))
        .reason,
    ).toBe("UNAUTHENTICATED");
  });

  it("trusted-header callers are still subject to the allowed roles", async () => {
    const { user } = clients((await start({ requireAuth: false, allowedRoles: ["customer"] })).transport);
    expect(
      await refusalOf(user.getBalance({ id: "b" }, { headers: { "X-User-ID": "u-gw", "X-User-Type": "manager" } })),
    ).toEqual({ code: Code.PermissionDenied, reason: "FORBIDDEN" });
  });

  it("warns at start when authentication is not required", () => {
    const warnings: string[] = [];
    const log = { warn: (m: string) => void warnings.push(m) };
    logStartupWarnings({ requireAuth: true, serviceTokens: [SERVICE_TOKEN] }, log);
    expect(warnings).toEqual([]);
    logStartupWarnings({ requireAuth: false, serviceTokens: [SERVICE_TOKEN] }, log);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain("ACCOUNT_BALANCE_REQUIRE_AUTH=false");
  });
});
