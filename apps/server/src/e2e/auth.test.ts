import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import { hashSessionToken } from "@account-balance/ledger";
import { startTestServer, type TestServer } from "../testing/server.js";
import { createApi, grpcClient, PROTOCOLS, restFetch, type Api, type Auth, type Outcome } from "../testing/protocols.js";
import { HTTP_RULES, ROUTES } from "../testing/routes.js";
import { expectOk, expectRefused } from "../testing/expect.js";

// The auth matrix of spec sections 4 and 5 on REST, Connect (JSON, binary) and gRPC, against
// real servers: sessions (none, unknown, expired, revoked), roles, ownership, owner rules,
// admins and service tokens, and the three feature flags. The last block checks that none of
// the credentials used here ever reached a log line.

const BASE = "/bridge-payment/account-balance";
const MISSING_ID = "bal_01J0000000000000000000000Z";

let server: TestServer;
let api: Api;
/** Every session id handed to a server in this file: none may appear in full in a log. */
const secretsUsed: string[] = [];

async function session(srv: TestServer, userId: string, userType = "customer"): Promise<Auth> {
  const id = await srv.mintSession(userId, userType);
  secretsUsed.push(id);
  return { session: id };
}

async function balanceRow(id: string) {
  const rows = await server.sql("select status, metadata, version, balance_cents, expires_at from account_balances where id = $1", [id]);
  return rows[0];
}

async function countFor(userId: string): Promise<number> {
  const rows = await server.sql<{ n: string }>("select count(*) as n from account_balances where user_id = $1", [userId]);
  return Number(rows[0]!.n);
}

beforeAll(async () => {
  // Admins must be listed too: ACCOUNT_BALANCE_ALLOWED_ROLES applies to them (only service tokens bypass it).
  server = await startTestServer({ ACCOUNT_BALANCE_ALLOWED_ROLES: "customer,admin" });
  secretsUsed.push(server.serviceToken);
  api = createApi(server.port, HTTP_RULES);
});

afterAll(async () => {
  api?.close();
  await server?.close();
});

describe.each(PROTOCOLS)("auth matrix over %s", (protocol) => {
  const me = `alice-${protocol}`;
  const other = `bob-${protocol}`;
  let alice: Auth;
  let bob: Auth;
  let admin: Auth;
  let service: Auth;
  let alicesBalance: string;
  let bobsBalance: string;

  beforeAll(async () => {
    alice = await session(server, me);
    bob = await session(server, other);
    admin = await session(server, `admin-${protocol}`, "admin");
    service = { bearer: server.serviceToken };
    alicesBalance = expectOk(await api.call(protocol, "CreateBalance", { currency: "EUR", metadata: { k: "v" } }, alice)).data.id;
    bobsBalance = expectOk(await api.call(protocol, "CreateBalance", { currency: "EUR" }, bob)).data.id;
  });

  describe("credentials", () => {
    it("no session -> UNAUTHENTICATED", async () => {
      expectRefused(await api.call(protocol, "ListMyBalances", {}), "UNAUTHENTICATED");
    });

    it("an unknown session -> UNAUTHENTICATED", async () => {
      const bogus = randomBytes(32).toString("base64url");
      secretsUsed.push(bogus);
      expectRefused(await api.call(protocol, "ListMyBalances", {}, { session: bogus }), "UNAUTHENTICATED");
      expectRefused(await api.call(protocol, "ListMyBalances", {}, { bearer: bogus }), "UNAUTHENTICATED");
    });

    it("a malformed session id -> UNAUTHENTICATED, never a 5xx", async () => {
      expectRefused(await api.call(protocol, "ListMyBalances", {}, { session: "x".repeat(5000) }), "UNAUTHENTICATED");
      expectRefused(await api.call(protocol, "ListMyBalances", {}, { session: "not/a=token" }), "UNAUTHENTICATED");
    });

    it("an expired session -> UNAUTHENTICATED", async () => {
      const expired = await session(server, me);
      await server.sql("update sessions set expires_at = now() - interval '1 minute' where id = $1", [hashSessionToken(expired.session!)]);
      expectRefused(await api.call(protocol, "ListMyBalances", {}, expired), "UNAUTHENTICATED");
    });

    it("a session minted with a 1 s ttl stops working once it is past", async () => {
      const id = await server.mintSession(me, "customer", 1);
      secretsUsed.push(id);
      expectOk(await api.call(protocol, "ListMyBalances", {}, { session: id }));
      await new Promise((r) => setTimeout(r, 1_100));
      expectRefused(await api.call(protocol, "ListMyBalances", {}, { session: id }), "UNAUTHENTICATED");
    });

    it("a revoked session -> UNAUTHENTICATED", async () => {
      const revoked = await session(server, me);
      expect(await server.app.ledger.sessions.revoke(revoked.session!)).toBe(true);
      expectRefused(await api.call(protocol, "ListMyBalances", {}, revoked), "UNAUTHENTICATED");
    });

    it("a session as Authorization: Bearer works like X-Session-ID", async () => {
      const res = expectOk(await api.call(protocol, "ListMyBalances", {}, { bearer: alice.session! }));
      expect(res.data.map((b: any) => b.id)).toEqual([alicesBalance]);
    });

    it("a wrong bearer token is not a service token -> UNAUTHENTICATED", async () => {
      const wrong = server.serviceToken.slice(0, -1) + (server.serviceToken.endsWith("a") ? "b" : "a");
      expectRefused(await api.call(protocol, "ListUserBalances", { user_id: me }, { bearer: wrong }), "UNAUTHENTICATED");
    });

    it("credentials are checked before input: a bad id without a session is UNAUTHENTICATED", async () => {
      expectRefused(await api.call(protocol, "GetBalance", { id: "nope" }), "UNAUTHENTICATED");
      expectRefused(await api.call(protocol, "GetBalance", { id: "nope" }, alice), "VALIDATION_FAILED");
    });
  });

  describe("roles", () => {
    it("a role outside ACCOUNT_BALANCE_ALLOWED_ROLES -> FORBIDDEN (before input validation)", async () => {
      const guest = await session(server, `guest-${protocol}`, "guest");
      expectRefused(await api.call(protocol, "ListMyBalances", {}, guest), "FORBIDDEN");
      expectRefused(await api.call(protocol, "CreateBalance", { currency: "EUR" }, guest), "FORBIDDEN");
      expectRefused(await api.call(protocol, "GetBalance", { id: "nope" }, guest), "FORBIDDEN");
      expect(await countFor(`guest-${protocol}`)).toBe(0);
    });

    it.each(ROUTES.filter((r) => r.service === "AccountBalanceAdminService").map((r) => [r.rpc, r] as const))(
      "admin RPC %s as a customer -> FORBIDDEN",
      async (_name, row) => {
        expectRefused(await api.call(protocol, row.rpc, row.sample({ balanceId: alicesBalance, userId: me }), alice), "FORBIDDEN");
      },
    );

    it("a service token has no balances of its own: /me -> VALIDATION_FAILED", async () => {
      expectRefused(await api.call(protocol, "ListMyBalances", {}, service), "VALIDATION_FAILED");
    });
  });

  describe("ownership", () => {
    it("another user's balance is NOT_FOUND on get, update and close, and is left unchanged", async () => {
      const before = await balanceRow(bobsBalance);
      expectRefused(await api.call(protocol, "GetBalance", { id: bobsBalance }, alice), "NOT_FOUND");
      expectRefused(await api.call(protocol, "UpdateBalance", { id: bobsBalance, metadata: { x: "y" } }, alice), "NOT_FOUND");
      // Visibility comes before permission: not FORBIDDEN, which would confirm the id exists.
      expectRefused(await api.call(protocol, "UpdateBalance", { id: bobsBalance, status: "suspended" }, alice), "NOT_FOUND");
      expectRefused(await api.call(protocol, "CloseBalance", { id: bobsBalance }, alice), "NOT_FOUND");
      expect(await balanceRow(bobsBalance)).toEqual(before);
    });

    it("another user's balance is NOT_FOUND for money and history too (visibility before permission), nothing written", async () => {
      const txnsBefore = await server.sql("select count(*) as n from account_transactions where account_balance_id = $1", [bobsBalance]);
      expectRefused(await api.call(protocol, "CreditBalance", { id: bobsBalance, amount_cents: 5 }, alice), "NOT_FOUND");
      expectRefused(await api.call(protocol, "DebitBalance", { id: bobsBalance, amount_cents: 5 }, alice), "NOT_FOUND");
      expectRefused(await api.call(protocol, "DebitBalance", { id: bobsBalance, amount_cents: 5, allow_negative: true }, alice), "NOT_FOUND");
      expectRefused(await api.call(protocol, "ListBalanceTransactions", { id: bobsBalance }, alice), "NOT_FOUND");
      expectRefused(await api.call(protocol, "GetBalanceStatistics", { id: bobsBalance }, alice), "NOT_FOUND");
      const txnsAfter = await server.sql("select count(*) as n from account_transactions where account_balance_id = $1", [bobsBalance]);
      expect(txnsAfter).toEqual(txnsBefore);
    });

    it("an id that does not exist answers exactly like another user's", async () => {
      const missing = expectRefused(await api.call(protocol, "GetBalance", { id: MISSING_ID }, alice), "NOT_FOUND");
      const foreign = expectRefused(await api.call(protocol, "GetBalance", { id: bobsBalance }, alice), "NOT_FOUND");
      expect(foreign.message).toBe(missing.message);
    });

    it("another user's balances never show in /me lists", async () => {
      const res = expectOk(await api.call(protocol, "ListMyBalances", {}, alice));
      expect(res.data.map((b: any) => b.user_id)).toEqual([me]);
    });
  });

  describe("owner rules", () => {
    it("a customer cannot create a balance for another user -> FORBIDDEN, no row", async () => {
      expectRefused(await api.call(protocol, "CreateBalance", { user_id: `victim-${protocol}`, currency: "EUR" }, alice), "FORBIDDEN");
      expect(await countFor(`victim-${protocol}`)).toBe(0);
    });

    it("a customer cannot open with a balance -> FORBIDDEN, no row", async () => {
      const before = await countFor(me);
      expectRefused(await api.call(protocol, "CreateBalance", { currency: "EUR", balance_cents: 1000 }, alice), "FORBIDDEN");
      expectRefused(await api.call(protocol, "CreateBalance", { currency: "EUR", status: "suspended" }, alice), "FORBIDDEN");
      expect(await countFor(me)).toBe(before);
    });

    it("a customer cannot change status or expiry of their own balance -> FORBIDDEN, row unchanged", async () => {
      const before = await balanceRow(alicesBalance);
      expectRefused(await api.call(protocol, "UpdateBalance", { id: alicesBalance, status: "suspended" }, alice), "FORBIDDEN");
      const later = new Date(Date.now() + 86_400_000).toISOString();
      expectRefused(await api.call(protocol, "UpdateBalance", { id: alicesBalance, expires_at: later }, alice), "FORBIDDEN");
      expect(await balanceRow(alicesBalance)).toEqual(before);
    });

    it("creating for oneself by naming oneself is allowed", async () => {
      const res = expectOk(await api.call(protocol, "CreateBalance", { user_id: me, currency: "USD", balance_type: "refund" }, alice));
      expect(res.data).toMatchObject({ user_id: me, currency: "USD", balance_type: "refund", balance_cents: 0 });
    });
  });

  describe("admins and services act on anyone", () => {
    it("an admin session reads, updates and closes another user's balance", async () => {
      const target = expectOk(await api.call(protocol, "CreateBalance", { user_id: other, currency: "GBP" }, admin)).data.id;
      expect(expectOk(await api.call(protocol, "GetBalance", { id: target }, admin)).data.user_id).toBe(other);
      const upd = expectOk(await api.call(protocol, "UpdateBalance", { id: target, status: "suspended", metadata: { by: "admin" } }, admin));
      expect(upd.data).toMatchObject({ status: "suspended", metadata: { by: "admin" } });
      expect(expectOk(await api.call(protocol, "CloseBalance", { id: target }, admin)).data.status).toBe("closed");
      expect((await balanceRow(target))!.status).toBe("closed");
    });

    it("a service token creates with an opening balance for any user and lists their balances", async () => {
      const created = expectOk(
        await api.call(protocol, "CreateBalance", { user_id: other, currency: "JPY", balance_cents: 700, status: "suspended" }, service),
      );
      expect(created.data).toMatchObject({ user_id: other, currency: "JPY", balance_cents: 700, status: "suspended" });
      const list = expectOk(await api.call(protocol, "ListUserBalances", { user_id: other, currency: "JPY" }, service));
      expect(list.data.map((b: any) => b.id)).toEqual([created.data.id]);
      expect(expectOk(await api.call(protocol, "GetBalance", { id: created.data.id }, service)).data.balance_cents).toBe(700);
    });

    it("a service token updates expiry of any balance", async () => {
      const later = new Date(Date.now() + 7 * 86_400_000);
      later.setUTCMilliseconds(0);
      const res = expectOk(await api.call(protocol, "UpdateBalance", { id: alicesBalance, expires_at: later.toISOString() }, service));
      expect(Date.parse(res.data.expires_at)).toBe(later.getTime());
    });
  });
});

describe("idempotency keys and a changed role", () => {
  it.each(PROTOCOLS)("%s: what a user did as an admin is not replayed to them as a customer (another user's balance stays NOT_FOUND)", async (protocol) => {
    const service: Auth = { bearer: server.serviceToken };
    const victim = expectOk(await api.call("rest", "CreateBalance", { user_id: `demoted-victim-${protocol}`, currency: "EUR", balance_cents: 100 }, service)).data.id;
    const asAdmin = await session(server, `demoted-${protocol}`, "admin");
    const asCustomer = await session(server, `demoted-${protocol}`, "customer");
    const debit = { id: victim, amount_cents: 5, idempotency_key: `demote-${protocol}` };
    expect(expectOk(await api.call(protocol, "DebitBalance", debit, asAdmin)).data.balance.user_id).toBe(`demoted-victim-${protocol}`);
    // The same key and request once the role is gone: NOT_FOUND, as without a key, never the
    // victim's balance; a keyed close likewise.
    expectRefused(await api.call(protocol, "DebitBalance", debit, asCustomer), "NOT_FOUND");
    expectRefused(await api.call(protocol, "CloseBalance", { id: victim, idempotency_key: `demote-close-${protocol}` }, asCustomer), "NOT_FOUND");
    // And as an admin again, the first result is replayed; one debit in all.
    expect(expectOk(await api.call(protocol, "DebitBalance", debit, asAdmin)).data.balance.balance_cents).toBe(95);
    const rows = await server.sql<{ n: string }>("select count(*)::text as n from account_transactions where account_balance_id = $1 and transaction_type = 'debit'", [victim]);
    expect(rows[0]!.n).toBe("1");
  });

  it("a malformed Idempotency-Key header is a 400 before the create's permission checks (403), as in the field", async () => {
    const customer = await session(server, "key-order");
    const res = await restFetch(server.baseUrl, "POST", "/bridge-payment/account-balance", {
      headers: { "x-session-id": customer.session!, "content-type": "application/json", "idempotency-key": "bad key" },
      body: JSON.stringify({ user_id: "someone-else", currency: "EUR" }),
    });
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ success: false, code: "VALIDATION_FAILED" });
  });
});

describe("session id sources on REST (spec section 5 order)", () => {
  let sid: string;
  beforeAll(async () => {
    sid = (await session(server, "carol")).session!;
  });

  it("query session_id and cookie session_id are accepted", async () => {
    const q = await restFetch(server.baseUrl, "GET", `${BASE}/me/balances?session_id=${encodeURIComponent(sid)}`);
    expect(q.status).toBe(200);
    const c = await restFetch(server.baseUrl, "GET", `${BASE}/me/balances`, { headers: { cookie: `other=1; session_id=${sid}` } });
    expect(c.status).toBe(200);
  });

  it("X-Session-ID wins over a valid bearer: a bad header is refused even with a good bearer", async () => {
    const res = await restFetch(server.baseUrl, "GET", `${BASE}/me/balances`, {
      headers: { "x-session-id": "bad-session-id-value", authorization: `Bearer ${sid}` },
    });
    expect(res.status).toBe(401);
    expect(res.body).toMatchObject({ success: false, code: "UNAUTHENTICATED" });
  });

  it.each(PROTOCOLS)("X-Session-ID wins over a service token (%s): the call is the session's user's, a bad session is refused", async (protocol) => {
    const both: Auth = { session: sid, bearer: server.serviceToken };
    // Another user's data, which the service token alone could read.
    expectRefused(await api.call(protocol, "ListUserBalances", { user_id: "someone-else" }, both), "FORBIDDEN");
    expect(expectOk(await api.call(protocol, "ListMyBalances", {}, both)).data).toBeInstanceOf(Array);
    expectRefused(await api.call(protocol, "ListMyBalances", {}, { session: "bad-session-id-value", bearer: server.serviceToken }), "UNAUTHENTICATED");
  });
});

describe("ACCOUNT_BALANCE_ENABLED=false", () => {
  let off: TestServer;
  let offApi: Api;
  let sid: string;
  beforeAll(async () => {
    off = await startTestServer({ ACCOUNT_BALANCE_ENABLED: "false" });
    secretsUsed.push(off.serviceToken);
    offApi = createApi(off.port, HTTP_RULES);
    sid = (await session(off, "dave")).session!;
  });
  afterAll(async () => {
    offApi?.close();
    await off?.close();
    expect(off.logs.length).toBeGreaterThan(0);
    assertNoSecretsIn(off.logs);
  });

  const cases = ROUTES.flatMap((row) => PROTOCOLS.map((protocol) => ({ name: `${row.rpc} over ${protocol}`, row, protocol })));
  it.each(cases)("$name -> MODULE_DISABLED (REST 404, gRPC UNIMPLEMENTED), with or without credentials", async ({ row, protocol }) => {
    const req = row.sample({ balanceId: MISSING_ID, userId: "dave" });
    expectRefused(await offApi.call(protocol, row.rpc, req, { session: sid }), "MODULE_DISABLED");
    expectRefused(await offApi.call(protocol, row.rpc, req), "MODULE_DISABLED");
  });

  it("nothing is written while disabled", async () => {
    await offApi.call("rest", "CreateBalance", { currency: "EUR" }, { bearer: off.serviceToken });
    const rows = await off.sql<{ n: string }>("select count(*) as n from account_balances");
    expect(Number(rows[0]!.n)).toBe(0);
  });

  it("health stays SERVING for the server (\"\"), the module reports NOT_SERVING; probes stay 200", async () => {
    const c = grpcClient(off.port, "grpc.health.v1.Health");
    const check = (service: string) =>
      new Promise<string>((resolve, reject) =>
        c.Check({ service }, { deadline: Date.now() + 10_000 }, (e: grpc.ServiceError | null, r: { status: string }) =>
          e ? reject(e) : resolve(r.status),
        ),
      );
    try {
      expect(await check("")).toBe("SERVING");
      expect(await check("accountbalance.v1.AccountBalanceService")).toBe("NOT_SERVING");
    } finally {
      c.close();
    }
    expect((await restFetch(off.baseUrl, "GET", "/healthz")).status).toBe(200);
    expect((await restFetch(off.baseUrl, "GET", "/readyz")).status).toBe(200);
  });
});

describe("ACCOUNT_BALANCE_REQUIRE_AUTH=false (trusted X-User-ID)", () => {
  let open: TestServer;
  let openApi: Api;
  beforeAll(async () => {
    open = await startTestServer({ ACCOUNT_BALANCE_REQUIRE_AUTH: "false" });
    secretsUsed.push(open.serviceToken);
    openApi = createApi(open.port, HTTP_RULES);
  });
  afterAll(async () => {
    openApi?.close();
    await open?.close();
    assertNoSecretsIn(open.logs);
  });

  it("logs a warning at start", () => {
    expect(open.logs.some((l) => l.includes('"level":"warn"') && l.includes("ACCOUNT_BALANCE_REQUIRE_AUTH=false"))).toBe(true);
  });

  it.each(PROTOCOLS)("over %s: X-User-ID is the caller; X-User-Type sets the role; neither is 401", async (protocol) => {
    const user = `gw-${protocol}`;
    const created = expectOk(await openApi.call(protocol, "CreateBalance", { currency: "EUR" }, { headers: { "x-user-id": user } }));
    expect(created.data.user_id).toBe(user);
    const mine = expectOk(await openApi.call(protocol, "ListMyBalances", {}, { headers: { "x-user-id": user } }));
    expect(mine.data.map((b: any) => b.id)).toEqual([created.data.id]);
    // Default role customer: the admin service is refused; X-User-Type admin opens it.
    expectRefused(await openApi.call(protocol, "ListUserBalances", { user_id: user }, { headers: { "x-user-id": user } }), "FORBIDDEN");
    const asAdmin = expectOk(
      await openApi.call(protocol, "ListUserBalances", { user_id: user }, { headers: { "x-user-id": "ops", "x-user-type": "admin" } }),
    );
    expect(asAdmin.data).toHaveLength(1);
    expectRefused(await openApi.call(protocol, "ListMyBalances", {}), "UNAUTHENTICATED");
  });

  it("a credential that is sent is still checked: a bad session with X-User-ID is 401", async () => {
    for (const protocol of PROTOCOLS) {
      const res: Outcome = await openApi.call(protocol, "ListMyBalances", {}, { session: "bogus-session", headers: { "x-user-id": "mallory" } });
      expectRefused(res, "UNAUTHENTICATED");
    }
  });
});

/** No service token, bridge secret or full session id in any log line. */
function assertNoSecretsIn(logs: readonly string[]): void {
  const text = logs.join("\n");
  for (const secret of secretsUsed) {
    expect(text.includes(secret), `a credential (${secret.slice(0, 4)}…) appears in the logs`).toBe(false);
  }
}

describe("logs", () => {
  it("never contain the service token or a full session id after all of the above", () => {
    expect(server.logs.length).toBeGreaterThan(0);
    expect(secretsUsed.length).toBeGreaterThan(10);
    assertNoSecretsIn(server.logs);
  });
});
