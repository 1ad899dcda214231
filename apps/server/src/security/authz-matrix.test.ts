import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { JsonObject } from "@bufbuild/protobuf";
import { startTestServer, type TestServer } from "../testing/server.js";
import { createApi, type Api, type Auth, type Outcome, type Protocol } from "../testing/protocols.js";
import { HTTP_RULES } from "../testing/routes.js";
import { REASONS, type Reason } from "../testing/expect.js";

// Access control, exhaustively: every RPC x every kind of caller x every protocol, against one
// table of expected outcomes. The server runs with ACCOUNT_BALANCE_ALLOWED_ROLES=customer,admin,
// so a "guest" session is a role that is not allowed. Every refused call is also checked to
// have written nothing.

const CALLERS = ["anonymous", "invalidSession", "expiredSession", "owner", "otherCustomer", "roleNotAllowed", "admin", "service"] as const;
type Caller = (typeof CALLERS)[number];

const RPCS = [
  "ListMyBalances",
  "GetMyTotalBalance",
  "ListMyTransactions",
  "GetBalance",
  "CreateBalance",
  "UpdateBalance",
  "CloseBalance",
  "CreditBalance",
  "DebitBalance",
  "ListBalanceTransactions",
  "GetBalanceStatistics",
  "ListUserBalances",
  "GetUserTotalBalance",
  "ListExpiringBalances",
] as const;
type Rpc = (typeof RPCS)[number];

type Expected = "ok" | Reason;

// Rows that every RPC shares: nobody without a valid session of an allowed role gets anywhere.
const NO_ENTRY = { anonymous: "UNAUTHENTICATED", invalidSession: "UNAUTHENTICATED", expiredSession: "UNAUTHENTICATED", roleNotAllowed: "FORBIDDEN" } as const;

/**
 * THE table. "owner" calls are about the owner's own balance (or their own /me lists);
 * "otherCustomer" calls name the owner's balance (or, for /me, their own empty lists).
 */
const EXPECTED: Record<Rpc, Record<Caller, Expected>> = {
  // /me: a caller's own lists; a service has no balances of its own.
  ListMyBalances: { ...NO_ENTRY, owner: "ok", otherCustomer: "ok", admin: "ok", service: "VALIDATION_FAILED" },
  GetMyTotalBalance: { ...NO_ENTRY, owner: "ok", otherCustomer: "ok", admin: "ok", service: "VALIDATION_FAILED" },
  ListMyTransactions: { ...NO_ENTRY, owner: "ok", otherCustomer: "ok", admin: "ok", service: "VALIDATION_FAILED" },
  // One balance: another customer's is NOT_FOUND, never FORBIDDEN.
  GetBalance: { ...NO_ENTRY, owner: "ok", otherCustomer: "NOT_FOUND", admin: "ok", service: "ok" },
  // Creating a balance for the owner: the owner may (zero, active), another customer may not.
  CreateBalance: { ...NO_ENTRY, owner: "ok", otherCustomer: "FORBIDDEN", admin: "ok", service: "ok" },
  UpdateBalance: { ...NO_ENTRY, owner: "ok", otherCustomer: "NOT_FOUND", admin: "ok", service: "ok" },
  CloseBalance: { ...NO_ENTRY, owner: "ok", otherCustomer: "NOT_FOUND", admin: "ok", service: "ok" },
  // Money in: admins and services only; the owner learns it exists, then FORBIDDEN.
  CreditBalance: { ...NO_ENTRY, owner: "FORBIDDEN", otherCustomer: "NOT_FOUND", admin: "ok", service: "ok" },
  DebitBalance: { ...NO_ENTRY, owner: "ok", otherCustomer: "NOT_FOUND", admin: "ok", service: "ok" },
  ListBalanceTransactions: { ...NO_ENTRY, owner: "ok", otherCustomer: "NOT_FOUND", admin: "ok", service: "ok" },
  GetBalanceStatistics: { ...NO_ENTRY, owner: "ok", otherCustomer: "NOT_FOUND", admin: "ok", service: "ok" },
  // The admin service: admin roles and services only.
  ListUserBalances: { ...NO_ENTRY, owner: "FORBIDDEN", otherCustomer: "FORBIDDEN", admin: "ok", service: "ok" },
  GetUserTotalBalance: { ...NO_ENTRY, owner: "FORBIDDEN", otherCustomer: "FORBIDDEN", admin: "ok", service: "ok" },
  ListExpiringBalances: { ...NO_ENTRY, owner: "FORBIDDEN", otherCustomer: "FORBIDDEN", admin: "ok", service: "ok" },
};

const PROTOCOLS: readonly Protocol[] = ["rest", "connect-binary", "connect-json", "grpc"];
const MUTATING = new Set<Rpc>(["CreateBalance", "UpdateBalance", "CloseBalance", "CreditBalance", "DebitBalance"]);

const OWNER = "authz-owner";
const OTHER = "authz-other";
const ADMIN = "authz-admin";

let server: TestServer;
let api: Api;
let auth: Record<Caller, Auth>;
let funded: string;
let cellNo = 0;

async function service(rpc: string, request: JsonObject) {
  const out = await api.call("rest", rpc, request, { bearer: server.serviceToken });
  if (!out.ok) throw new Error(`fixture ${rpc} failed: ${JSON.stringify(out)}`);
  return out.data;
}

/** A valid request for each RPC, aimed at the owner's balances; unique per cell where it matters. */
async function requestFor(rpc: Rpc, n: number): Promise<JsonObject> {
  switch (rpc) {
    case "ListMyBalances":
      return { limit: 1000 };
    case "GetMyTotalBalance":
      return {};
    case "ListMyTransactions":
      return { limit: 500 };
    case "GetBalance":
    case "GetBalanceStatistics":
      return { id: funded };
    case "ListBalanceTransactions":
      return { id: funded, limit: 5 };
    case "CreateBalance":
      return { user_id: OWNER, currency: "EUR", balance_type: "credits", reference_code: `authz-${n}` };
    case "UpdateBalance":
      return { id: funded, metadata: { cell: String(n) } };
    case "CloseBalance":
      // A zero balance of the owner's own per cell, so that every cell could close one.
      return { id: (await service("CreateBalance", { user_id: OWNER, currency: "EUR", reference_code: `close-${n}` })).id };
    case "CreditBalance":
    case "DebitBalance":
      return { id: funded, amount_cents: 1, description: `authz ${n}` };
    case "ListUserBalances":
      return { user_id: OWNER, limit: 10 };
    case "GetUserTotalBalance":
      return { user_id: OWNER };
    case "ListExpiringBalances":
      return { within_days: 30 };
  }
}

/** Everything a refused call must leave as it was. */
async function ledgerState(): Promise<string> {
  const [row] = await server.sql<{ s: string }>(
    `select concat_ws('|',
        (select count(*) from account_balances),
        (select count(*) from account_transactions),
        (select count(*) from idempotency_keys),
        (select string_agg(id || ':' || version || ':' || status || ':' || balance_cents, ',' order by id) from account_balances)) as s`,
  );
  return row!.s;
}

/** "ok", or the refusal's reason; a refusal whose status does not match its reason is reported as such. */
function actualOf(o: Outcome): string {
  if (o.ok) return "ok";
  const reason = o.reason ?? "(no reason)";
  const want = REASONS[reason as Reason];
  if (!want) return `${reason} (status ${o.status ?? o.code})`;
  if (o.protocol === "rest" && o.status !== want.http) return `${reason} but HTTP ${o.status}`;
  if (o.protocol !== "rest" && o.code !== want.code) return `${reason} but code ${o.code}`;
  return reason;
}

/** What an allowed call may show: only the caller's own rows on /me, the owner's on the rest. */
function leakOf(rpc: Rpc, caller: Caller, o: Outcome): string | undefined {
  if (!o.ok) return undefined;
  const self = caller === "owner" ? OWNER : caller === "otherCustomer" ? OTHER : caller === "admin" ? ADMIN : undefined;
  if (rpc === "ListMyBalances") {
    const foreign = (o.data as Array<{ user_id: string }>).filter((b) => b.user_id !== self);
    if (foreign.length > 0) return `${caller} sees ${foreign.length} balances of other users`;
  }
  if (rpc === "ListMyTransactions" && caller !== "owner" && (o.data as unknown[]).length > 0) {
    return `${caller} sees ${(o.data as unknown[]).length} transactions that are not theirs`;
  }
  if (rpc === "GetMyTotalBalance" && caller !== "owner" && Number(o.data?.total_balance_cents ?? 0) !== 0) {
    return `${caller} sees a total of ${o.data.total_balance_cents}`;
  }
  return undefined;
}

beforeAll(async () => {
  server = await startTestServer({ ACCOUNT_BALANCE_ALLOWED_ROLES: "customer,admin", LOG_LEVEL: "info" });
  api = createApi(server.port, HTTP_RULES);
  const expiring = await server.mintSession(OWNER, "customer", 1);
  auth = {
    anonymous: {},
    invalidSession: { session: `no-such-session-${randomBytes(16).toString("hex")}` },
    expiredSession: { session: expiring },
    owner: { session: await server.mintSession(OWNER, "customer") },
    otherCustomer: { session: await server.mintSession(OTHER, "customer") },
    roleNotAllowed: { session: await server.mintSession("authz-guest", "guest") },
    admin: { session: await server.mintSession(ADMIN, "admin") },
    service: { bearer: server.serviceToken },
  };
  funded = (await service("CreateBalance", { user_id: OWNER, currency: "EUR", balance_cents: 1_000_000 })).id;
  // The owner's history has a movement, so that a leak of it would show.
  await service("CreditBalance", { id: funded, amount_cents: 100, description: "seed" });
  // Let the short session run out.
  await new Promise((r) => setTimeout(r, 1200));
});

afterAll(async () => {
  api?.close();
  await server?.close();
});

describe("authorization matrix", () => {
  it(`${RPCS.length} RPCs x ${CALLERS.length} callers x ${PROTOCOLS.length} protocols match EXPECTED`, { timeout: 120_000 }, async () => {
    // Sanity: the table is complete.
    for (const rpc of RPCS) expect(Object.keys(EXPECTED[rpc]).sort()).toEqual([...CALLERS].sort());

    const mismatches: string[] = [];
    const leaks: string[] = [];
    let cells = 0;
    let unexpectedAllows = 0;
    for (const protocol of PROTOCOLS) {
      for (const rpc of RPCS) {
        for (const caller of CALLERS) {
          const n = ++cellNo;
          cells++;
          const request = await requestFor(rpc, n);
          const callAuth: Auth = MUTATING.has(rpc)
            ? { ...auth[caller], headers: { "idempotency-key": `authz-${protocol}-${rpc}-${caller}-${n}` } }
            : auth[caller];
          const expected = EXPECTED[rpc][caller];
          const before = expected === "ok" ? undefined : await ledgerState();
          const outcome = await api.call(protocol, rpc, request, callAuth);
          const actual = actualOf(outcome);
          if (actual !== expected) {
            mismatches.push(`${protocol.padEnd(14)} ${rpc.padEnd(24)} ${caller.padEnd(15)} expected ${expected.padEnd(18)} got ${actual}${outcome.ok ? "" : ` ("${outcome.message}")`}`);
            if (actual === "ok") unexpectedAllows++;
          }
          const leak = leakOf(rpc, caller, outcome);
          if (leak) leaks.push(`${protocol} ${rpc}: ${leak}`);
          if (before !== undefined) {
            const after = await ledgerState();
            if (after !== before) leaks.push(`${protocol} ${rpc} ${caller}: refused (${actual}) but the ledger changed`);
          }
        }
      }
    }
    console.log(
      `authorization matrix: ${cells} cells (${RPCS.length} RPCs x ${CALLERS.length} callers x ${PROTOCOLS.length} protocols), ` +
        `${mismatches.length} mismatches, ${unexpectedAllows} unexpected allows, ${leaks.length} leaks`,
    );
    expect.soft(unexpectedAllows, "unexpected allows").toBe(0);
    expect.soft(mismatches, "cells whose outcome differs from EXPECTED").toEqual([]);
    expect.soft(leaks, "allowed calls that showed others' data, refused calls that wrote").toEqual([]);
    expect(cells).toBe(RPCS.length * CALLERS.length * PROTOCOLS.length);
  });

  it("another user's balance is NOT_FOUND whatever its id looks like, for every id-based RPC and protocol", async () => {
    const unknown = `bal_${"0".repeat(26)}`;
    const idRpcs: Rpc[] = ["GetBalance", "UpdateBalance", "CloseBalance", "CreditBalance", "DebitBalance", "ListBalanceTransactions", "GetBalanceStatistics"];
    // The other customer must not be able to tell the owner's real balance from one that does not exist.
    for (const protocol of PROTOCOLS) {
      for (const rpc of idRpcs) {
        for (const id of [funded, unknown]) {
          const request = { ...(await requestFor(rpc, ++cellNo)), id };
          const o = await api.call(protocol, rpc, request, auth.otherCustomer);
          expect(actualOf(o), `${protocol} ${rpc} ${id === funded ? "owner's" : "unknown"} id`).toBe("NOT_FOUND");
          if (!o.ok) expect(o.message).toBe("balance not found");
        }
      }
    }
  });
});
