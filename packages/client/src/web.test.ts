import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { startTestServer, type TestServer } from "@account-balance/server/dist/testing/server.js";
import { createConnectTransport } from "@connectrpc/connect-web";
import { createWebClients } from "./web.js";
import { AccountBalanceError, createAccountBalanceClient, createAuthInterceptor } from "./index.js";

// The browser clients, run here on Node's global fetch (as in a browser, over HTTP/1.1),
// against a real server: Connect (JSON) and gRPC-Web (binary).

/** The AccountBalanceError a call fails with (the test fails if it succeeds or throws anything else). */
async function failure(call: Promise<unknown>): Promise<AccountBalanceError> {
  try {
    await call;
  } catch (err) {
    if (err instanceof AccountBalanceError) return err;
    throw err;
  }
  throw new Error("the call succeeded");
}

let server: TestServer;

beforeAll(async () => {
  server = await startTestServer();
});

afterAll(async () => {
  await server?.close();
});

describe.each(["connect", "grpc-web"] as const)("createWebClients over %s", (protocol) => {
  it("moves money with bigint amounts and a session", async () => {
    const service = createWebClients({ baseUrl: server.baseUrl, protocol, auth: { serviceToken: server.serviceToken } });
    const userId = `web-${protocol}`;
    const id = (await service.balances.createBalance({ userId, currency: "EUR" })).data!.id;
    await service.balances.creditBalance({ id, amountCents: 2n ** 53n - 1n });

    const owner = createWebClients({ baseUrl: server.baseUrl, protocol, auth: { sessionId: await server.mintSession(userId) }, timeoutMs: 10_000 });
    const debit = await owner.balances.debitBalance({ id, amountCents: 1n });
    expect(debit.data!.balance!.balanceCents).toBe(2n ** 53n - 2n);
    const total = await owner.balances.getMyTotalBalance({ currency: "EUR" });
    expect(total.data!.totalBalanceCents).toBe(2n ** 53n - 2n);

    const err = await failure(owner.balances.debitBalance({ id, amountCents: 2n ** 53n - 1n }));
    expect(err).toBeInstanceOf(AccountBalanceError);
    expect(err.reason).toBe("INSUFFICIENT_BALANCE");
    expect(err.code).toBe(Code.FailedPrecondition);
    expect(err.details.available_cents).toBe(2n ** 53n - 2n);

    const rows = await server.sql<{ n: string }>("select count(*)::text as n from account_transactions where account_balance_id = $1", [id]);
    expect(rows[0]!.n).toBe("2");
  });

  it("refuses a call without credentials as UNAUTHENTICATED", async () => {
    const anonymous = createWebClients({ baseUrl: server.baseUrl, protocol });
    const err = await failure(anonymous.balances.listMyBalances({}));
    expect([err.reason, err.code]).toEqual(["UNAUTHENTICATED", Code.Unauthenticated]);
  });
});

it("works over a transport of the caller's own, with the auth interceptor", async () => {
  const transport = createConnectTransport({
    baseUrl: server.baseUrl,
    useBinaryFormat: true,
    interceptors: [createAuthInterceptor({ serviceToken: server.serviceToken })],
  });
  const { balances, admin } = createAccountBalanceClient(transport, { timeoutMs: 10_000 });
  const id = (await balances.createBalance({ userId: "own-transport", balanceCents: 42n })).data!.id;
  expect((await admin.listUserBalances({ userId: "own-transport" })).data.map((b) => [b.id, b.balanceCents])).toEqual([[id, 42n]]);
  const err = await failure(balances.closeBalance({ id }));
  expect([err.reason, err.code]).toEqual(["BALANCE_NOT_EMPTY", Code.FailedPrecondition]);
});
