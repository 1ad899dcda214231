// Type-checked in the scratch project: the published types resolve through `exports`.
import { createNodeClients, type AccountBalanceError, type Reason } from "@account-balance/client/node";
import { createWebClients } from "@account-balance/client/web";
import type { AccountBalance } from "@account-balance/client";

const { balances } = createNodeClients({ baseUrl: "http://localhost:8080", protocol: "grpc", auth: { sessionId: "s" } });
export async function read(id: string): Promise<bigint> {
  const res = await balances.getBalance({ id }, { timeoutMs: 1000 });
  const b: AccountBalance | undefined = res.data;
  return b?.balanceCents ?? 0n;
}
export function available(err: AccountBalanceError): bigint | undefined {
  const r: Reason = err.reason;
  return r === "INSUFFICIENT_BALANCE" ? err.details.available_cents : undefined;
}
export const web = createWebClients({ baseUrl: "https://example.com", protocol: "grpc-web", auth: { headers: () => ({ "x-session-id": "s" }) } });
