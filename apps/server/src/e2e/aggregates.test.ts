import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "../testing/server.js";
import { createApi, PROTOCOLS, type Api, type Auth } from "../testing/protocols.js";
import { HTTP_RULES } from "../testing/routes.js";
import { expectOk, expectRefused } from "../testing/expect.js";

// Every balance and amount stays within ±(2^53-1), but a total over many balances, or a sum
// over a long history, need not. Such a sum is refused with AMOUNT_OUT_OF_RANGE on every
// protocol: JSON would carry it as a string, and past int64 it could not be encoded at all
// (the gRPC answer once failed to encode and ended the process).

const MAX = 9007199254740991;
let server: TestServer;
let api: Api;
let service: Auth;
let owner: Auth;
let rich: string;

beforeAll(async () => {
  server = await startTestServer();
  api = createApi(server.port, HTTP_RULES);
  service = { bearer: server.serviceToken };
  owner = { session: await server.mintSession("aggregate-owner") };
  for (const code of ["a", "b"]) {
    expectOk(await api.call("rest", "CreateBalance", { user_id: "aggregate-owner", currency: "EUR", balance_cents: MAX, reference_code: code }, service));
  }
  // One balance whose credits add up past the range: MAX in, MAX out, 1 in.
  rich = expectOk(await api.call("rest", "CreateBalance", { user_id: "aggregate-history", currency: "EUR" }, service)).data.id;
  expectOk(await api.call("rest", "CreditBalance", { id: rich, amount_cents: MAX }, service));
  expectOk(await api.call("rest", "DebitBalance", { id: rich, amount_cents: MAX }, service));
  expectOk(await api.call("rest", "CreditBalance", { id: rich, amount_cents: 1 }, service));
});

afterAll(async () => {
  api?.close();
  await server?.close();
});

describe("a sum beyond ±(2^53-1)", () => {
  it.each(PROTOCOLS)("a user's total (%s): AMOUNT_OUT_OF_RANGE with a way to ask for less, and the server keeps serving", async (protocol) => {
    const mine = expectRefused(await api.call(protocol, "GetMyTotalBalance", {}, owner), "AMOUNT_OUT_OF_RANGE");
    expect(mine.message).toMatch(/currency or balance_type/);
    expectRefused(await api.call(protocol, "GetUserTotalBalance", { user_id: "aggregate-owner" }, service), "AMOUNT_OUT_OF_RANGE");
    // A narrower question that fits is answered.
    const other = expectOk(await api.call(protocol, "GetUserTotalBalance", { user_id: "aggregate-history" }, service));
    expect(Number(other.data.total_balance_cents)).toBe(1);
  });

  it.each(PROTOCOLS)("a balance's statistics (%s): AMOUNT_OUT_OF_RANGE, and a window that fits is answered", async (protocol) => {
    const refused = expectRefused(await api.call(protocol, "GetBalanceStatistics", { id: rich }, service), "AMOUNT_OUT_OF_RANGE");
    expect(refused.message).toMatch(/from\/to window/);
    const ok = expectOk(await api.call(protocol, "GetBalanceStatistics", { id: rich, to: "2000-01-01T00:00:00Z" }, service));
    expect(Number(ok.data.total_credits_cents)).toBe(0);
  });
});
