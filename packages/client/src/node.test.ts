import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { startTestServer, type TestServer } from "@account-balance/server/dist/testing/server.js";
import { createNodeClients, type NodeClients } from "./node.js";
import { AccountBalanceError, BalanceType, TransactionType, REASONS } from "./index.js";
import { CreditBalanceRequestSchema } from "./gen/accountbalance/v1/account_balance_service_pb.js";

// The Node clients against a real server and database: both protocols, typed errors with
// bigint details, per-call deadlines, and credit/debit retries that reuse one idempotency key.

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
const opened: NodeClients[] = [];

beforeAll(async () => {
  server = await startTestServer();
});

afterAll(async () => {
  for (const c of opened) c.close();
  await server?.close();
});

function clients(options: Partial<Parameters<typeof createNodeClients>[0]> = {}): NodeClients {
  const c = createNodeClients({ baseUrl: server.baseUrl, auth: { serviceToken: server.serviceToken }, ...options });
  opened.push(c);
  return c;
}

async function transactionsOf(balanceId: string): Promise<{ transaction_type: string; amount_cents: string }[]> {
  return server.sql("select transaction_type, amount_cents::text as amount_cents from account_transactions where account_balance_id = $1 order by sequence", [balanceId]);
}

describe.each(["grpc", "connect"] as const)("createNodeClients over %s", (protocol) => {
  it("creates, credits, debits, reads and lists with bigint money", async () => {
    const { balances, admin } = clients({ protocol });
    const userId = `node-${protocol}`;
    const created = await balances.createBalance({ userId, currency: "EUR", balanceType: BalanceType.CREDITS, metadata: { source: "test" } });
    const id = created.data!.id;
    expect(created.data!.balanceCents).toBe(0n);

    const credit = await balances.creditBalance({ id, amountCents: 9_007_199_254_740_000n, description: "top up" });
    expect(credit.data!.balance!.balanceCents).toBe(9_007_199_254_740_000n);
    expect(credit.data!.transaction!.transactionType).toBe(TransactionType.CREDIT);

    const debit = await balances.debitBalance({ id, amountCents: 1_000n });
    expect(debit.data!.balance!.balanceCents).toBe(9_007_199_254_739_000n);
    expect(debit.data!.transaction!.balanceBeforeCents).toBe(9_007_199_254_740_000n);

    const got = await balances.getBalance({ id });
    expect(typeof got.data!.balanceCents).toBe("bigint");
    expect(got.data!.balanceCents).toBe(9_007_199_254_739_000n);
    expect(got.data!.metadata).toEqual({ source: "test" });

    const listed = await admin.listUserBalances({ userId });
    expect(listed.data.map((b) => b.id)).toEqual([id]);
    expect(listed.meta!.total).toBe(1n);

    // As the owner, with a session.
    const session = await server.mintSession(userId);
    const own = clients({ protocol, auth: { sessionId: session } });
    const mine = await own.balances.listMyBalances({ currency: "EUR" });
    expect(mine.data.map((b) => b.balanceCents)).toEqual([9_007_199_254_739_000n]);
    const history = await own.balances.listBalanceTransactions({ id });
    expect(history.data.map((t) => t.amountCents)).toEqual([1_000n, 9_007_199_254_740_000n]);

    expect(await transactionsOf(id)).toEqual([
      { transaction_type: "credit", amount_cents: "9007199254740000" },
      { transaction_type: "debit", amount_cents: "1000" },
    ]);
  });

  it("surfaces INSUFFICIENT_BALANCE as err.reason with bigint details", async () => {
    const { balances } = clients({ protocol });
    const id = (await balances.createBalance({ userId: `poor-${protocol}`, currency: "USD", balanceCents: 500n })).data!.id;
    const err = await failure(balances.debitBalance({ id, amountCents: 501n }));
    expect(err).toBeInstanceOf(AccountBalanceError);
    const e = err as AccountBalanceError;
    expect(e.reason).toBe("INSUFFICIENT_BALANCE");
    expect(e.code).toBe(Code.FailedPrecondition);
    expect(e.details.available_cents).toBe(500n);
    expect(e.details.required_cents).toBe(501n);
    expect(e.retryable).toBe(false);
    expect(e.message).not.toMatch(/%[0-9A-F]{2}/);
    // Refused, so nothing but the opening adjustment was written.
    expect((await transactionsOf(id)).map((t) => t.transaction_type)).toEqual(["adjustment"]);
  });

  it("types other refusals: NOT_FOUND, VALIDATION_FAILED, UNAUTHENTICATED, FORBIDDEN", async () => {
    const { balances } = clients({ protocol });
    const missing = await failure(balances.getBalance({ id: "bal_01ARZ3NDEKTSV4RRFFQ69G5FAV" }));
    expect([missing.reason, missing.code]).toEqual(["NOT_FOUND", Code.NotFound]);
    const invalid = await failure(balances.creditBalance({ id: "nope", amountCents: 1n }));
    expect([invalid.reason, invalid.code]).toEqual(["VALIDATION_FAILED", Code.InvalidArgument]);
    const anonymous = clients({ protocol, auth: undefined });
    const unauth = await failure(anonymous.balances.listMyBalances({}));
    expect([unauth.reason, unauth.code]).toEqual(["UNAUTHENTICATED", Code.Unauthenticated]);
    const customer = clients({ protocol, auth: { sessionId: await server.mintSession(`cust-${protocol}`) } });
    const forbidden = await failure(customer.admin.listUserBalances({ userId: "someone" }));
    expect([forbidden.reason, forbidden.code]).toEqual(["FORBIDDEN", Code.PermissionDenied]);
    for (const e of [missing, invalid, unauth, forbidden]) expect(REASONS).toContain(e.reason);
  });

  it("applies the default deadline and a per-call override", async () => {
    // 1 ms is shorter than any real call; the override lets the same client succeed.
    const { balances } = clients({ protocol, timeoutMs: 1, retry: false });
    const slow = await failure(balances.listMyBalances({}, { headers: { "x-user-id": "x" } }));
    expect(slow).toBeInstanceOf(AccountBalanceError);
    expect(slow.code).toBe(Code.DeadlineExceeded);
    expect(slow.retryable).toBe(true);
    const admin = (await clients({ protocol }).admin.listExpiringBalances({}, { timeoutMs: 10_000 })).meta;
    expect(admin).toBeDefined();
    const ok = await balances.createBalance({ userId: `deadline-${protocol}` }, { timeoutMs: 10_000 });
    expect(ok.data!.userId).toBe(`deadline-${protocol}`);
  });

  it("retries a credit that landed but whose answer was lost, with the same key: one transaction", async () => {
    const seen: string[] = [];
    let failures = 0;
    let failWith = Code.Unavailable;
    // After the server has processed the call, pretend the connection dropped once.
    const lossy: Interceptor = (next) => async (req) => {
      seen.push((req.message as { idempotencyKey?: string }).idempotencyKey ?? "");
      const res = await next(req);
      if (failures-- > 0) throw new ConnectError("lost answer", failWith);
      return res;
    };
    const { balances } = clients({ protocol, interceptors: [lossy], retry: { initialBackoffMs: 5 } });
    const id = (await balances.createBalance({ userId: `retry-${protocol}`, currency: "EUR" })).data!.id;
    seen.length = 0;
    failures = 1;

    const credit = await balances.creditBalance({ id, amountCents: 250n });
    expect(credit.data!.balance!.balanceCents).toBe(250n);
    expect(seen).toHaveLength(2);
    expect(seen[0]).toMatch(/^[0-9a-f-]{36}$/);
    expect(seen[1]).toBe(seen[0]);
    expect(await transactionsOf(id)).toEqual([{ transaction_type: "credit", amount_cents: "250" }]);
    const creditKey = seen[0]!;

    // A key of the caller's own is kept; a debit is retried the same way.
    seen.length = 0;
    failures = 1;
    const debit = await balances.debitBalance({ id, amountCents: 50n, idempotencyKey: `order-42-${protocol}` });
    expect(debit.data!.balance!.balanceCents).toBe(200n);
    expect(seen).toEqual([`order-42-${protocol}`, `order-42-${protocol}`]);
    expect((await transactionsOf(id)).map((t) => t.transaction_type)).toEqual(["credit", "debit"]);

    // A key sent as the Idempotency-Key header is the field's too, and is kept on retry.
    seen.length = 0;
    failures = 1;
    const viaHeader = await balances.debitBalance({ id, amountCents: 1n }, { headers: { "idempotency-key": `hdr-${protocol}` } });
    expect(viaHeader.data!.balance!.balanceCents).toBe(199n);
    expect(seen).toEqual([`hdr-${protocol}`, `hdr-${protocol}`]);
    expect((await transactionsOf(id)).map((t) => t.transaction_type)).toEqual(["credit", "debit", "debit"]);

    // A message made with create() has "" for no key: it gets one like a plain object.
    seen.length = 0;
    failures = 1;
    const made = await balances.creditBalance(create(CreditBalanceRequestSchema, { id, amountCents: 1n }));
    expect(made.data!.balance!.balanceCents).toBe(200n);
    expect(seen).toHaveLength(2);
    expect(seen[0]).toMatch(/^[0-9a-f-]{36}$/);
    expect(seen[1]).toBe(seen[0]);
    expect((await transactionsOf(id)).map((t) => t.amount_cents)).toEqual(["250", "50", "1", "1"]);

    // A deadline that fired after the server answered is retried the same way.
    seen.length = 0;
    failures = 1;
    failWith = Code.DeadlineExceeded;
    const again = await balances.debitBalance({ id, amountCents: 25n });
    expect(again.data!.balance!.balanceCents).toBe(175n);
    expect(seen).toHaveLength(2);
    expect(seen[1]).toBe(seen[0]);
    expect((await transactionsOf(id)).map((t) => t.amount_cents)).toEqual(["250", "50", "1", "1", "25"]);

    const keys = await server.sql<{ n: string }>("select count(*)::text as n from idempotency_keys where key = any($1)", [[creditKey, seen[0]]]);
    expect(keys[0]!.n).toBe("2");
  });

  it("gives up after maxAttempts and never retries refusals or other methods", async () => {
    let calls = 0;
    const down: Interceptor = () => async () => {
      calls++;
      throw new ConnectError("down", Code.Unavailable);
    };
    const { balances } = clients({ protocol, interceptors: [down], retry: { maxAttempts: 4, initialBackoffMs: 1 } });
    const err = await failure(balances.creditBalance({ id: "bal_01ARZ3NDEKTSV4RRFFQ69G5FAV", amountCents: 1n }));
    expect([err.reason, err.code, calls]).toEqual(["UNAVAILABLE", Code.Unavailable, 4]);
    calls = 0;
    await balances.createBalance({}).catch(() => undefined);
    expect(calls).toBe(1);
    calls = 0;
    await balances.creditBalance({ id: "bal_01ARZ3NDEKTSV4RRFFQ69G5FAV", amountCents: 1n }, { retry: false }).catch(() => undefined);
    expect(calls).toBe(1);

    // A refusal (NOT_FOUND) is final at once.
    let real = 0;
    const counting: Interceptor = (next) => async (req) => {
      real++;
      return next(req);
    };
    const counted = clients({ protocol, interceptors: [counting] });
    await counted.balances.creditBalance({ id: "bal_01ARZ3NDEKTSV4RRFFQ69G5FAV", amountCents: 1n }).catch(() => undefined);
    expect(real).toBe(1);
  });

  it("sends custom headers from a function before every call", async () => {
    const session = await server.mintSession(`custom-${protocol}`);
    let asked = 0;
    const { balances } = clients({
      protocol,
      auth: {
        headers: async () => {
          asked++;
          return { authorization: `Bearer ${session}` };
        },
      },
    });
    const created = await balances.createBalance({ currency: "GBP" });
    expect(created.data!.userId).toBe(`custom-${protocol}`);
    await balances.listMyBalances({});
    expect(asked).toBe(2);
  });
});
