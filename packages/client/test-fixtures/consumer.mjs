// Runs in a scratch project outside the workspace, where @account-balance/client was
// installed from its packed tarball (as another repository would install it).
import { createNodeClients, AccountBalanceError, BalanceType } from "@account-balance/client/node";
import { createWebClients } from "@account-balance/client/web";
import { MovementSchema } from "@account-balance/client/gen/accountbalance/v1/records_pb.js";

const baseUrl = process.env.BASE_URL;
const serviceToken = process.env.SERVICE_TOKEN;

const out = {};
for (const protocol of ["grpc", "connect"]) {
  const { balances, close } = createNodeClients({ baseUrl, protocol, auth: { serviceToken }, timeoutMs: 10_000 });
  const created = await balances.createBalance({ userId: `packed-${protocol}`, currency: "EUR", balanceType: BalanceType.CREDITS });
  const id = created.data.id;
  await balances.creditBalance({ id, amountCents: 9_007_199_254_740_991n });
  await balances.debitBalance({ id, amountCents: 991n });
  const got = await balances.getBalance({ id });
  let reason;
  try {
    await balances.debitBalance({ id, amountCents: 9_007_199_254_740_991n });
  } catch (err) {
    reason = err instanceof AccountBalanceError ? `${err.reason}:${typeof err.details.available_cents}:${err.details.available_cents}` : String(err);
  }
  out[protocol] = { type: typeof got.data.balanceCents, balance: got.data.balanceCents.toString(), reason };
  close();
}
const web = createWebClients({ baseUrl, protocol: "grpc-web", auth: { serviceToken } });
out.web = (await web.admin.listUserBalances({ userId: "packed-grpc" })).data.map((b) => b.balanceCents.toString());
out.schema = MovementSchema.typeName;
console.log(JSON.stringify(out));
