import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { startTestServer, type TestServer } from "../testing/server.js";
import { createApi, PROTOCOLS, restFetch, type Api, type Auth } from "../testing/protocols.js";
import { HTTP_RULES, ROUTES } from "../testing/routes.js";
import { expectOk, expectRefused } from "../testing/expect.js";

// Spec section 2 over REST, Connect (JSON and binary) and gRPC (grpc-js + proto-loader), on one
// real server and database: every route of the table in src/testing/routes.ts is routed to its
// RPC and answers its sample; balance records and money movements are then checked in detail
// on each protocol (amounts, record shapes, rows written).

let server: TestServer;
let api: Api;
let admin: Auth;
let service: Auth;

const BALANCE_KEYS = [
  "balance_cents",
  "balance_type",
  "created_at",
  "currency",
  "customer_id",
  "expires_at",
  "id",
  "metadata",
  "organization_id",
  "project_id",
  "reference_code",
  "status",
  "updated_at",
  "user_id",
  "version",
];
const BALANCE_ID = /^bal_[0-9A-HJKMNP-TV-Z]{26}$/;
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;

beforeAll(async () => {
  server = await startTestServer();
  api = createApi(server.port, HTTP_RULES);
  admin = { session: await server.mintSession("routes-admin", "admin") };
  service = { bearer: server.serviceToken };
});

afterAll(async () => {
  api?.close();
  await server?.close();
});

/** A fresh empty balance of `userId`, created with the service token over Connect. */
async function freshBalance(userId: string, extra: Record<string, unknown> = {}): Promise<string> {
  const created = expectOk(
    await api.call("connect-json", "CreateBalance", { user_id: userId, currency: "EUR", ...(extra as object) }, service),
  );
  return created.data.id as string;
}

async function countBalances(userId: string): Promise<number> {
  const rows = await server.sql<{ n: string }>("select count(*) as n from account_balances where user_id = $1", [userId]);
  return Number(rows[0]!.n);
}

describe("every route of spec section 2", () => {
  const cases = ROUTES.flatMap((row) =>
    PROTOCOLS.map((protocol) => ({ name: `#${row.n} ${row.rpc} (${row.http} ${row.path}) over ${protocol}`, row, protocol })),
  );

  it.each(cases)("$name is guarded: no credentials -> UNAUTHENTICATED", async ({ row, protocol }) => {
    const balanceId = "bal_01J0000000000000000000000Z";
    const res = await api.call(protocol, row.rpc, row.sample({ balanceId, userId: "nobody" }));
    // The refusal comes from the interceptor of this very method: the route exists and maps to an RPC.
    expectRefused(res, "UNAUTHENTICATED");
  });

  it.each(cases)("$name reaches its own RPC with credentials", async ({ row, protocol }) => {
    const userId = `reach-${row.n}-${protocol}`;
    const owner: Auth = { session: await server.mintSession(userId) };
    const balanceId = await freshBalance(userId, row.fundedWith ? { balance_cents: row.fundedWith } : {});
    const res = await api.call(protocol, row.rpc, row.sample({ balanceId, userId }), row.actor === "admin" ? admin : owner);
    if (row.coverage === "full") {
      const ok = expectOk(res);
      if (protocol === "rest") expect(ok.body.success).toBe(true);
      return;
    }
    // "reachable" rows (an RPC not wired yet): success, or "not implemented" from this very RPC.
    if (res.ok) {
      if (protocol === "rest") expect(res.body).toMatchObject({ success: true });
      return;
    }
    const named = `accountbalance.v1.${row.service}.${row.rpc}`;
    if (protocol === "rest") {
      // Through the gateway (the JSON envelope), to this RPC (its name), not a missing route.
      expect(res.status, JSON.stringify(res)).toBeLessThan(500);
      expect(res.body).toMatchObject({ success: false });
      expect(typeof res.body.code).toBe("string");
      expect(res.message).toContain(named);
    } else {
      expect(res.code, JSON.stringify(res)).toBe(Code.Unimplemented);
      expect(res.message).toContain(named);
    }
  });

  it("literal segments win over {id}: /me/..., /users/..., /expiring never reach GetBalance", async () => {
    const auth = { session: await server.mintSession("literal-user", "admin") };
    for (const path of ["/me/balances", "/me/total", "/me/transactions", "/expiring", "/users/u1/balances", "/users/u1/total"]) {
      const res = await restFetch(server.baseUrl, "GET", `/bridge-payment/account-balance${path}`, { headers: { "x-session-id": auth.session } });
      expect(res.status, path).toBeLessThan(500);
      expect(res.body, path).toHaveProperty("success");
      // GetBalance would refuse "me"/"expiring"/"users" as an id with VALIDATION_FAILED.
      expect(res.body.code ?? null, `${path}: ${res.text}`).not.toBe("VALIDATION_FAILED");
    }
  });

  it("an unknown path under the base path is not answered by the gateway", async () => {
    const res = await restFetch(server.baseUrl, "GET", "/bridge-payment/account-balance/bal_01J0000000000000000000000Z/nothing", {
      headers: { "x-session-id": admin.session! },
    });
    expect(res.status).toBe(404);
    expect(res.body?.success).not.toBe(true);
  });

  it("a known path with the wrong method is 405 with an Allow header", async () => {
    const res = await restFetch(server.baseUrl, "PATCH", "/bridge-payment/account-balance/me/balances", {
      headers: { "x-session-id": admin.session! },
    });
    expect(res.status).toBe(405);
    expect(res.headers.get("allow")).toContain("GET");
    // Was code INTERNAL before the fix in rest.ts (GATEWAY_REASON).
    expect(res.body).toMatchObject({ success: false, code: "NOT_FOUND" });
  });
});

describe.each(PROTOCOLS)("balance records over %s", (protocol) => {
  const userId = `crud-${protocol}`;
  let owner: Auth;
  let plain: any;
  let funded: any;

  beforeAll(async () => {
    owner = { session: await server.mintSession(userId) };
  });

  it("the owner creates an empty balance for themself (REST 201, exact record shape, row written)", async () => {
    const res = expectOk(
      await api.call(
        protocol,
        "CreateBalance",
        {
          balance_type: "credits",
          currency: "EUR",
          reference_code: `signup-${protocol}`,
          organization_id: "org_1",
          metadata: { source: "signup" },
        },
        owner,
      ),
    );
    plain = res.data;
    expect(plain).toMatchObject({
      user_id: userId,
      organization_id: "org_1",
      project_id: null,
      customer_id: null,
      balance_type: "credits",
      balance_cents: 0,
      currency: "EUR",
      reference_code: `signup-${protocol}`,
      status: "active",
      expires_at: null,
      metadata: { source: "signup" },
      version: 1,
    });
    expect(plain.id).toMatch(BALANCE_ID);
    expect(plain.created_at).toMatch(ISO);
    expect(plain.updated_at).toMatch(ISO);
    if (protocol === "rest") {
      expect(res.status).toBe(201);
      expect(Object.keys(res.body).sort()).toEqual(["data", "success"]);
      expect(Object.keys(plain).sort()).toEqual(BALANCE_KEYS);
      expect(typeof plain.balance_cents).toBe("number");
      expect(typeof plain.version).toBe("number");
    }
    const rows = await server.sql("select * from account_balances where id = $1", [plain.id]);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ user_id: userId, currency: "EUR", balance_type: "credits", status: "active", reference_code: `signup-${protocol}` });
    expect(BigInt(rows[0]!.balance_cents as string)).toBe(0n);
    const txns = await server.sql("select * from account_transactions where account_balance_id = $1", [plain.id]);
    expect(txns).toHaveLength(0);
  });

  it("a service creates a funded balance for the user; the opening amount is an adjustment transaction", async () => {
    const expiresAt = new Date(Date.now() + 30 * 86_400_000);
    expiresAt.setUTCMilliseconds(0);
    const res = expectOk(
      await api.call(
        protocol,
        "CreateBalance",
        { user_id: userId, balance_cents: 1500, currency: "EUR", project_id: "proj_9", expires_at: expiresAt.toISOString() },
        service,
      ),
    );
    funded = res.data;
    expect(funded).toMatchObject({
      user_id: userId,
      balance_type: "general",
      balance_cents: 1500,
      currency: "EUR",
      project_id: "proj_9",
      organization_id: null,
      reference_code: null,
      status: "active",
      metadata: {},
    });
    // RFC 3339 in UTC; REST renders whole seconds without a fraction ("…:31Z").
    expect(funded.expires_at).toMatch(ISO);
    expect(Date.parse(funded.expires_at)).toBe(expiresAt.getTime());
    if (protocol === "rest") expect(res.status).toBe(201);
    const txns = await server.sql("select * from account_transactions where account_balance_id = $1", [funded.id]);
    expect(txns).toHaveLength(1);
    expect(txns[0]).toMatchObject({ transaction_type: "adjustment" });
    expect(String(txns[0]!.amount_cents)).toBe("1500");
    expect(String(txns[0]!.balance_after_cents)).toBe("1500");
  });

  it("the owner reads a balance by id", async () => {
    const res = expectOk(await api.call(protocol, "GetBalance", { id: funded.id }, owner));
    expect(res.data).toEqual(funded);
  });

  it("the owner lists their balances with filters, limit, page and meta", async () => {
    const all = expectOk(await api.call(protocol, "ListMyBalances", {}, owner));
    expect(all.data.map((b: any) => b.id).sort()).toEqual([plain.id, funded.id].sort());
    expect(all.meta).toEqual({ page: 1, limit: 100, total: 2, hasMore: false });

    const credits = expectOk(await api.call(protocol, "ListMyBalances", { balance_type: "credits", currency: "EUR" }, owner));
    expect(credits.data.map((b: any) => b.id)).toEqual([plain.id]);
    expect(credits.meta).toMatchObject({ total: 1 });

    const byRef = expectOk(await api.call(protocol, "ListMyBalances", { reference_code: `signup-${protocol}` }, owner));
    expect(byRef.data.map((b: any) => b.id)).toEqual([plain.id]);

    const byProject = expectOk(await api.call(protocol, "ListMyBalances", { project_id: "proj_9" }, owner));
    expect(byProject.data.map((b: any) => b.id)).toEqual([funded.id]);

    const none = expectOk(await api.call(protocol, "ListMyBalances", { currency: "USD" }, owner));
    expect(none.data).toEqual([]);
    expect(none.meta).toEqual({ page: 1, limit: 100, total: 0, hasMore: false });

    const page1 = expectOk(await api.call(protocol, "ListMyBalances", { limit: 1, page: 1 }, owner));
    expect(page1.data).toHaveLength(1);
    expect(page1.meta).toEqual({ page: 1, limit: 1, total: 2, hasMore: true });
    const page2 = expectOk(await api.call(protocol, "ListMyBalances", { limit: 1, page: 2 }, owner));
    expect(page2.data).toHaveLength(1);
    expect(page2.meta).toEqual({ page: 2, limit: 1, total: 2, hasMore: false });
    expect(page2.data[0].id).not.toBe(page1.data[0].id);

    if (protocol === "rest") {
      expect(Object.keys(page1.body).sort()).toEqual(["data", "meta", "success"]);
      expect(Object.keys(page1.meta)).toEqual(["page", "limit", "total", "hasMore"]);
      expect(typeof page1.meta.total).toBe("number");
    }
  });

  it("the owner replaces metadata; the version goes up and the row changes", async () => {
    const res = expectOk(await api.call(protocol, "UpdateBalance", { id: plain.id, metadata: { tier: "gold", note: "a, b: c" } }, owner));
    expect(res.data).toMatchObject({ id: plain.id, metadata: { tier: "gold", note: "a, b: c" }, version: plain.version + 1, status: "active" });
    const rows = await server.sql("select metadata, version from account_balances where id = $1", [plain.id]);
    expect(rows[0]!.metadata).toEqual({ tier: "gold", note: "a, b: c" });
    expect(Number(rows[0]!.version)).toBe(plain.version + 1);

    const cleared = expectOk(await api.call(protocol, "UpdateBalance", { id: plain.id, metadata: {} }, owner));
    expect(cleared.data.metadata).toEqual({});
    plain = cleared.data;
  });

  it("the owner may send the record back with new metadata (its status and expiry unchanged), but not change either", async () => {
    const record = expectOk(await api.call(protocol, "GetBalance", { id: plain.id }, owner)).data;
    const { status, expires_at } = record;
    const back = protocol === "rest" ? { id: plain.id, status, expires_at, metadata: { echo: "1" } } : { id: plain.id, status, metadata: { echo: "1" } };
    const res = expectOk(await api.call(protocol, "UpdateBalance", back, owner));
    expect(res.data).toMatchObject({ metadata: { echo: "1" }, version: plain.version + 1, status: "active", expires_at: null });
    expectRefused(await api.call(protocol, "UpdateBalance", { id: plain.id, status: "suspended", metadata: { echo: "2" } }, owner), "FORBIDDEN");
    expectRefused(await api.call(protocol, "UpdateBalance", { id: plain.id, expires_at: "2099-01-01T00:00:00Z", metadata: { echo: "2" } }, owner), "FORBIDDEN");
    const rows = await server.sql("select metadata, status, expires_at, version from account_balances where id = $1", [plain.id]);
    expect(rows[0]).toMatchObject({ metadata: { echo: "1" }, status: "active", expires_at: null });
    const cleared = expectOk(await api.call(protocol, "UpdateBalance", { id: plain.id, metadata: {} }, owner));
    plain = cleared.data;
  });

  it("an admin suspends and reactivates a balance", async () => {
    const suspended = expectOk(await api.call(protocol, "UpdateBalance", { id: plain.id, status: "suspended" }, admin));
    expect(suspended.data).toMatchObject({ status: "suspended", version: plain.version + 1 });
    const rows = await server.sql("select status from account_balances where id = $1", [plain.id]);
    expect(rows[0]!.status).toBe("suspended");
    const active = expectOk(await api.call(protocol, "UpdateBalance", { id: plain.id, status: "active" }, admin));
    expect(active.data.status).toBe("active");
  });

  it("an admin sets expires_at in the past: the answer, GetBalance and the status filters say expired at once, before any sweep", async () => {
    const lapseUser = `${userId}-lapse`;
    const id = await freshBalance(lapseUser, { balance_cents: 400 });
    const lapseOwner: Auth = { session: await server.mintSession(lapseUser) };
    const changed = expectOk(await api.call(protocol, "UpdateBalance", { id, expires_at: "2026-01-01T00:00:00Z" }, admin));
    expect(changed.data).toMatchObject({ status: "expired", balance_cents: 400 });
    expect(expectOk(await api.call(protocol, "GetBalance", { id }, lapseOwner)).data.status).toBe("expired");
    const expired = expectOk(await api.call(protocol, "ListMyBalances", { status: "expired" }, lapseOwner));
    expect(expired.data.map((b: any) => [b.id, b.status])).toEqual([[id, "expired"]]);
    expect(expectOk(await api.call(protocol, "ListMyBalances", { status: "active" }, lapseOwner)).data).toEqual([]);
    expectRefused(await api.call(protocol, "DebitBalance", { id, amount_cents: 1 }, lapseOwner), "BALANCE_EXPIRED");
  });

  it("an admin removes a balance's expiry (REST: expires_at null); an owner may not; both ways at once is a 400", async () => {
    const id = await freshBalance(`${userId}-expiry`, { expires_at: "2099-01-01T00:00:00Z" });
    const expiryOwner: Auth = { session: await server.mintSession(`${userId}-expiry`) };
    const clear = protocol === "rest" ? { id, expires_at: null } : { id, clear_expires_at: true };
    const stored = async () => (await server.sql("select expires_at, version from account_balances where id = $1", [id]))[0]!;

    expectRefused(await api.call(protocol, "UpdateBalance", clear, expiryOwner), "FORBIDDEN");
    expect((await stored()).expires_at).not.toBeNull();
    const both = protocol === "rest" ? { ...clear, clear_expires_at: true } : { ...clear, expires_at: "2099-02-01T00:00:00Z" };
    expectRefused(await api.call(protocol, "UpdateBalance", both, admin), "VALIDATION_FAILED");
    expect((await stored()).expires_at).not.toBeNull();

    const cleared = expectOk(await api.call(protocol, "UpdateBalance", clear, admin));
    expect(cleared.data).toMatchObject({ id, expires_at: null, version: 2 });
    expect(await stored()).toMatchObject({ expires_at: null, version: "2" });
  });

  it("the owner closes an empty balance; a funded one is BALANCE_NOT_EMPTY and stays open", async () => {
    const closed = expectOk(await api.call(protocol, "CloseBalance", { id: plain.id }, owner));
    expect(closed.data).toMatchObject({ id: plain.id, status: "closed", balance_cents: 0 });
    const rows = await server.sql("select status from account_balances where id = $1", [plain.id]);
    expect(rows[0]!.status).toBe("closed");

    expectRefused(await api.call(protocol, "CloseBalance", { id: funded.id }, owner), "BALANCE_NOT_EMPTY");
    const still = await server.sql("select status, balance_cents from account_balances where id = $1", [funded.id]);
    expect(still[0]).toMatchObject({ status: "active" });
    expect(String(still[0]!.balance_cents)).toBe("1500");
  });

  it("an admin lists the user's balances (AccountBalanceAdminService)", async () => {
    const res = expectOk(await api.call(protocol, "ListUserBalances", { user_id: userId }, admin));
    expect(res.data.map((b: any) => b.id).sort()).toEqual([plain.id, funded.id].sort());
    expect(res.meta).toEqual({ page: 1, limit: 100, total: 2, hasMore: false });
    const closedOnly = expectOk(await api.call(protocol, "ListUserBalances", { user_id: userId, status: "closed" }, service));
    expect(closedOnly.data.map((b: any) => ({ id: b.id, status: b.status }))).toEqual([{ id: plain.id, status: "closed" }]);
    expect(await countBalances(userId)).toBe(2);
  });
});

const TXN_KEYS = [
  "account_balance_id",
  "amount_cents",
  "balance_after_cents",
  "balance_before_cents",
  "created_at",
  "currency",
  "description",
  "id",
  "metadata",
  "reference_code",
  "sequence",
  "status",
  "transaction_type",
];

/** Spec section 6: the transactions of a balance chain, and the last one ends at its balance. */
async function expectChain(balanceId: string): Promise<void> {
  const txns = await server.sql<{ sequence: string; balance_before_cents: string; balance_after_cents: string }>(
    "select sequence, balance_before_cents, balance_after_cents from account_transactions where account_balance_id = $1 order by sequence",
    [balanceId],
  );
  let running = 0n;
  txns.forEach((t, i) => {
    expect(Number(t.sequence)).toBe(i + 1);
    expect(BigInt(t.balance_before_cents)).toBe(running);
    running = BigInt(t.balance_after_cents);
  });
  const bal = await server.sql<{ balance_cents: string }>("select balance_cents from account_balances where id = $1", [balanceId]);
  expect(BigInt(bal[0]!.balance_cents)).toBe(running);
}

describe.each(PROTOCOLS)("money movements and reads over %s", (protocol) => {
  const userId = `mover-${protocol}`;
  // A currency of its own per protocol, so totals and the (global) expiring list are isolated.
  const currency = { rest: "CHF", "connect-json": "SEK", "connect-binary": "NOK", grpc: "DKK" }[protocol];
  let owner: Auth;
  let id: string;
  let credit: any;

  beforeAll(async () => {
    owner = { session: await server.mintSession(userId) };
    id = expectOk(await api.call(protocol, "CreateBalance", { currency }, owner)).data.id;
  });

  it("an admin credits: the balance and the transaction come back, both rows written", async () => {
    const res = expectOk(
      await api.call(
        protocol,
        "CreditBalance",
        { id, amount_cents: 1000, description: "top up", reference_code: "inv-1", metadata: { order: "42" } },
        admin,
      ),
    );
    credit = res.data.transaction;
    expect(res.data.balance).toMatchObject({ id, balance_cents: 1000, currency, status: "active", version: 2 });
    expect(credit).toMatchObject({
      account_balance_id: id,
      transaction_type: "credit",
      amount_cents: 1000,
      balance_before_cents: 0,
      balance_after_cents: 1000,
      currency,
      description: "top up",
      reference_code: "inv-1",
      status: "completed",
      metadata: { order: "42" },
      sequence: 1,
    });
    expect(credit.id).toMatch(/^txn_[0-9A-HJKMNP-TV-Z]{26}$/);
    if (protocol === "rest") {
      expect(res.status).toBe(200);
      expect(Object.keys(res.data).sort()).toEqual(["balance", "transaction"]);
      expect(Object.keys(credit).sort()).toEqual(TXN_KEYS);
      expect(typeof credit.amount_cents).toBe("number");
    }
    const rows = await server.sql("select transaction_type, amount_cents from account_transactions where account_balance_id = $1", [id]);
    expect(rows.map((r) => [r.transaction_type, String(r.amount_cents)])).toEqual([["credit", "1000"]]);
  });

  it("the owner may not credit (FORBIDDEN), and nothing is written", async () => {
    expectRefused(await api.call(protocol, "CreditBalance", { id, amount_cents: 5 }, owner), "FORBIDDEN");
    const rows = await server.sql("select count(*) as n from account_transactions where account_balance_id = $1", [id]);
    expect(Number(rows[0]!.n)).toBe(1);
  });

  it("the owner debits within the balance", async () => {
    const res = expectOk(await api.call(protocol, "DebitBalance", { id, amount_cents: 300, description: "coffee" }, owner));
    expect(res.data.balance.balance_cents).toBe(700);
    expect(res.data.transaction).toMatchObject({
      transaction_type: "debit",
      amount_cents: 300,
      balance_before_cents: 1000,
      balance_after_cents: 700,
      sequence: 2,
      description: "coffee",
      reference_code: null,
    });
  });

  it("a debit past the balance is INSUFFICIENT_BALANCE with required/available, nothing written", async () => {
    const res = expectRefused(await api.call(protocol, "DebitBalance", { id, amount_cents: 800 }, owner), "INSUFFICIENT_BALANCE");
    if (protocol === "rest") expect(res.body.details).toMatchObject({ required_cents: 800, available_cents: 700 });
    else expect(res.errorInfo?.[0]?.metadata).toMatchObject({ required_cents: "800", available_cents: "700" });
    const bal = await server.sql("select balance_cents from account_balances where id = $1", [id]);
    expect(String(bal[0]!.balance_cents)).toBe("700");
  });

  it("allow_negative is for admins: FORBIDDEN for the owner, allowed for an admin", async () => {
    expectRefused(await api.call(protocol, "DebitBalance", { id, amount_cents: 800, allow_negative: true }, owner), "FORBIDDEN");
    const res = expectOk(await api.call(protocol, "DebitBalance", { id, amount_cents: 800, allow_negative: true }, admin));
    expect(res.data.balance.balance_cents).toBe(-100);
    expect(res.data.transaction).toMatchObject({ balance_before_cents: 700, balance_after_cents: -100, sequence: 3 });
    await expectChain(id);
  });

  it("the same Idempotency-Key replays the first result and writes nothing; another request with it is refused", async () => {
    const key = `idem-${protocol}-1`;
    const send = (amount: number) =>
      protocol === "rest"
        ? api.call(protocol, "CreditBalance", { id, amount_cents: amount }, admin, { headers: { "idempotency-key": key } })
        : api.call(protocol, "CreditBalance", { id, amount_cents: amount, idempotency_key: key }, admin);
    const first = expectOk(await send(100));
    const again = expectOk(await send(100));
    expect(again.data.transaction.id).toBe(first.data.transaction.id);
    expect(again.data.balance.balance_cents).toBe(0);
    expectRefused(await send(101), "IDEMPOTENCY_KEY_REUSED");
    const rows = await server.sql("select count(*) as n from account_transactions where account_balance_id = $1", [id]);
    expect(Number(rows[0]!.n)).toBe(4);
    await expectChain(id);
  });

  it("the balance's transactions, newest first, with filters and paging", async () => {
    const all = expectOk(await api.call(protocol, "ListBalanceTransactions", { id }, owner));
    expect(all.data.map((t: any) => [t.transaction_type, t.amount_cents, t.sequence])).toEqual([
      ["credit", 100, 4],
      ["debit", 800, 3],
      ["debit", 300, 2],
      ["credit", 1000, 1],
    ]);
    expect(all.meta).toEqual({ page: 1, limit: 50, total: 4, hasMore: false });
    const debits = expectOk(await api.call(protocol, "ListBalanceTransactions", { id, transaction_type: "debit", limit: 1 }, owner));
    expect(debits.data.map((t: any) => t.sequence)).toEqual([3]);
    expect(debits.meta).toEqual({ page: 1, limit: 1, total: 2, hasMore: true });
    const future = new Date(Date.now() + 3_600_000).toISOString();
    const none = expectOk(await api.call(protocol, "ListBalanceTransactions", { id, from: future }, owner));
    expect(none.data).toEqual([]);
  });

  it("a window's bounds count to the millisecond; over REST a bare date as `to` takes in the whole day", async () => {
    const all = expectOk(await api.call(protocol, "ListBalanceTransactions", { id }, owner));
    const newest: string = all.data[0].created_at;
    const oldest: string = all.data[all.data.length - 1].created_at;
    const atNewest = expectOk(await api.call(protocol, "ListBalanceTransactions", { id, from: newest }, owner));
    expect(atNewest.data.map((t: any) => t.sequence)).toContain(4);
    // A fraction finer than the millisecond is dropped from both bounds: from .xxx1 to .xxx9 is that millisecond.
    const ms = new Date(Date.parse(newest)).toISOString();
    const within = { from: ms.replace(/Z$/, "1Z"), to: ms.replace(/Z$/, "9Z") };
    expect(expectOk(await api.call(protocol, "ListBalanceTransactions", { id, ...within }, owner)).data.map((t: any) => t.sequence)).toContain(4);
    expect(expectOk(await api.call(protocol, "GetBalanceStatistics", { id, ...within }, owner)).data.transaction_count).toBeGreaterThanOrEqual(1);
    if (protocol !== "rest") return;
    const days = { from: oldest.slice(0, 10), to: newest.slice(0, 10) };
    expect(expectOk(await api.call(protocol, "ListBalanceTransactions", { id, ...days }, owner)).meta.total).toBe(4);
    expect(expectOk(await api.call(protocol, "GetBalanceStatistics", { id, ...days }, owner)).data.transaction_count).toBe(4);
  });

  it("my transactions span my balances; currency filters them", async () => {
    const mine = expectOk(await api.call(protocol, "ListMyTransactions", { currency }, owner));
    expect(mine.meta.total).toBe(4);
    expect(mine.data.every((t: any) => t.account_balance_id === id)).toBe(true);
    const other = expectOk(await api.call(protocol, "ListMyTransactions", { currency: "JPY" }, owner));
    expect(other.data).toEqual([]);
  });

  it("statistics of the balance", async () => {
    const res = expectOk(await api.call(protocol, "GetBalanceStatistics", { id }, owner));
    expect(res.data).toMatchObject({
      balance_id: id,
      currency,
      current_balance_cents: 0,
      total_credits_cents: 1100,
      total_debits_cents: 1100,
      net_change_cents: 0,
      credit_count: 2,
      debit_count: 2,
      transaction_count: 4,
      average_credit_cents: 550,
      average_debit_cents: 550,
      largest_credit_cents: 1000,
      largest_debit_cents: 800,
    });
    expect(res.data.first_transaction_at).toMatch(ISO);
    expect(res.data.last_transaction_at).toMatch(ISO);
  });

  it("totals for the owner and, as admin, for the user; currencies are never added together", async () => {
    expectOk(await api.call(protocol, "CreateBalance", { user_id: userId, currency, balance_type: "credits", balance_cents: 250 }, service));
    expectOk(await api.call(protocol, "CreateBalance", { user_id: userId, currency: "JPY", balance_cents: 9 }, service));
    const mine = expectOk(await api.call(protocol, "GetMyTotalBalance", { currency }, owner));
    expect(mine.data).toMatchObject({ currency, total_balance_cents: 250, balance_count: 2 });
    expect(mine.data.by_type).toEqual(
      expect.arrayContaining([
        { balance_type: "general", currency, total_balance_cents: 0, balance_count: 1 },
        { balance_type: "credits", currency, total_balance_cents: 250, balance_count: 1 },
      ]),
    );
    const theirs = expectOk(await api.call(protocol, "GetUserTotalBalance", { user_id: userId }, admin));
    // Without a currency filter: the currency holding the most balances, by_currency for all.
    expect(theirs.data).toMatchObject({ currency, total_balance_cents: 250, balance_count: 2 });
    expect(theirs.data.by_currency).toEqual(
      expect.arrayContaining([
        { currency, total_balance_cents: 250, balance_count: 2 },
        { currency: "JPY", total_balance_cents: 9, balance_count: 1 },
      ]),
    );
  });

  it("expiring balances: active, positive, within the window, soonest first", async () => {
    const soon = new Date(Date.now() + 2 * 86_400_000).toISOString();
    const later = new Date(Date.now() + 5 * 86_400_000).toISOString();
    const a = expectOk(await api.call(protocol, "CreateBalance", { user_id: userId, currency, balance_type: "promotional", balance_cents: 50, expires_at: later }, service)).data.id;
    const b = expectOk(await api.call(protocol, "CreateBalance", { user_id: userId, currency, balance_type: "refund", balance_cents: 60, expires_at: soon }, service)).data.id;
    // Empty: not listed.
    expectOk(await api.call(protocol, "CreateBalance", { user_id: userId, currency, balance_type: "general", reference_code: "empty", expires_at: soon }, service));
    const res = expectOk(await api.call(protocol, "ListExpiringBalances", { within_days: 7, currency }, admin));
    expect(res.data.map((x: any) => x.id)).toEqual([b, a]);
    expect(res.meta).toMatchObject({ total: 2 });
    const narrow = expectOk(await api.call(protocol, "ListExpiringBalances", { days: 3, currency }, service));
    expect(narrow.data.map((x: any) => x.id)).toEqual([b]);
  });
});

describe("deadlines", () => {
  it("a Connect call with timeoutMs 1 ends quickly: DEADLINE_EXCEEDED or a fast answer, never a hang", async () => {
    const owner = { session: await server.mintSession("deadline-user") };
    for (const protocol of ["connect-json", "connect-binary", "grpc"] as const) {
      const started = Date.now();
      const res = await api.call(protocol, "ListMyBalances", {}, owner, { timeoutMs: 1 });
      expect(Date.now() - started, protocol).toBeLessThan(15_000);
      if (!res.ok) expect(res.code, `${protocol}: ${JSON.stringify(res)}`).toBe(Code.DeadlineExceeded);
    }
  });

  it("a create with a 1 ms deadline either completes or writes nothing", async () => {
    const userId = "deadline-writer";
    const owner = { session: await server.mintSession(userId) };
    const res = await api.call("connect-json", "CreateBalance", { currency: "EUR" }, owner, { timeoutMs: 1 });
    // Give a call the server may still be running a moment to finish, then compare with what the caller was told.
    await new Promise((r) => setTimeout(r, 300));
    const n = await countBalances(userId);
    if (res.ok) expect(n).toBe(1);
    else {
      expect(res.code).toBe(Code.DeadlineExceeded);
      expect(n).toBeLessThanOrEqual(1);
    }
  });
});
