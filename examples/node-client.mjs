#!/usr/bin/env node
// Moves money with @account-balance/client from Node, as a backend service would.
//
//   BASE_URL=http://localhost:8080 SERVICE_TOKEN=… node examples/node-client.mjs
//
// Env: BASE_URL (default http://localhost:8080), SERVICE_TOKEN (one of the server's
// SERVICE_TOKENS), USER_ID (whose balance; default example-user), PROTOCOL (grpc | connect).
import { createNodeClients, AccountBalanceError, BalanceType } from "@account-balance/client/node";

const baseUrl = process.env.BASE_URL ?? "http://localhost:8080";
const serviceToken = process.env.SERVICE_TOKEN;
const userId = process.env.USER_ID ?? "example-user";
const protocol = process.env.PROTOCOL === "connect" ? "connect" : "grpc";
if (!serviceToken) throw new Error("set SERVICE_TOKEN");

const { balances, admin, close } = createNodeClients({
  baseUrl,
  protocol,
  auth: { serviceToken },
  timeoutMs: 5_000, // every call; a call may pass its own { timeoutMs }
  retry: { maxAttempts: 3 }, // credit/debit only, on UNAVAILABLE / DEADLINE_EXCEEDED, same idempotency key
});

try {
  const { data: balance } = await balances.createBalance({ userId, currency: "EUR", balanceType: BalanceType.CREDITS });
  console.log(`created ${balance.id} for ${balance.userId} over ${protocol}`);

  // Money is bigint end to end. Credit and debit get an idempotency key automatically;
  // pass your own (e.g. an order id) to make retries across processes safe too.
  const credit = await balances.creditBalance({ id: balance.id, amountCents: 1_000n, description: "welcome bonus" });
  console.log(`credited 1000, balance ${credit.data.balance.balanceCents}`);
  const debit = await balances.debitBalance({ id: balance.id, amountCents: 250n, idempotencyKey: `example-order-${balance.id}` });
  console.log(`debited 250, balance ${debit.data.balance.balanceCents}`);

  const { data: current } = await balances.getBalance({ id: balance.id }, { timeoutMs: 2_000 });
  console.log(`balance ${current.id}: ${current.balanceCents} ${current.currency} cents (${typeof current.balanceCents})`);

  try {
    await balances.debitBalance({ id: balance.id, amountCents: 10_000n });
  } catch (err) {
    if (!(err instanceof AccountBalanceError)) throw err;
    // err.reason is the spec's code; err.details carries its facts, amounts as bigint.
    if (err.reason === "INSUFFICIENT_BALANCE") {
      console.log(`refused: ${err.reason}, available ${err.details.available_cents}, required ${err.details.required_cents}`);
    } else {
      throw err;
    }
  }

  const { meta } = await admin.listUserBalances({ userId });
  console.log(`${userId} has ${meta.total} balance(s)`);
} finally {
  close();
}
