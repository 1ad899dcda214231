import { randomBytes } from "node:crypto";
import type { Scenario } from "./options.js";
import { balanceId } from "./ids.js";

/** What a load process needs to know (sent to it over IPC). */
export interface Target {
  baseUrl: string;
  restBase: string;
  serviceToken: string;
  /** X-Session-ID of the user GetMyTotalBalance sums. */
  session: string;
  databaseUrl: string;
  ids: { debitCount: number; hot: string; big: string; small: string };
}

/** One logical operation of a scenario, whatever the protocol. */
export type Op =
  | { rpc: "DebitBalance" | "CreditBalance"; id: string; amount: 1; key?: string }
  | { rpc: "GetBalance"; id: string }
  | { rpc: "ListBalanceTransactions"; id: string; limit: 50 }
  | { rpc: "GetMyTotalBalance" };

export const SERVICE = "accountbalance.v1.AccountBalanceService";

/** A source of operations for `scenario`; keys are unique per process and run. */
export function opSource(scenario: Scenario, target: Target): () => Op {
  const randomId = () => balanceId("debit", 1 + Math.floor(Math.random() * target.ids.debitCount));
  const run = randomBytes(6).toString("hex");
  let n = 0;
  switch (scenario) {
    case "debit":
      return () => ({ rpc: "DebitBalance", id: randomId(), amount: 1 });
    case "hot":
      return () => ({ rpc: "DebitBalance", id: target.ids.hot, amount: 1 });
    case "mixed":
      return () => ({
        rpc: Math.random() < 0.5 ? "CreditBalance" : "DebitBalance",
        id: randomId(),
        amount: 1,
        key: `bench-${run}-${process.pid}-${n++}`,
      });
    case "get":
      return () => ({ rpc: "GetBalance", id: randomId() });
    case "list-1m":
      return () => ({ rpc: "ListBalanceTransactions", id: target.ids.big, limit: 50 });
    case "list-1k":
      return () => ({ rpc: "ListBalanceTransactions", id: target.ids.small, limit: 50 });
    case "total":
      return () => ({ rpc: "GetMyTotalBalance" });
  }
}

/** Credentials: the service token for everything but the "me" call, which needs a user session. */
export function authHeaders(op: Op, target: Target): Record<string, string> {
  return op.rpc === "GetMyTotalBalance" ? { "x-session-id": target.session } : { authorization: `Bearer ${target.serviceToken}` };
}

/** The request as Connect JSON (proto3 JSON: camelCase, int64 as strings). */
export function connectJson(op: Op): string {
  switch (op.rpc) {
    case "DebitBalance":
    case "CreditBalance":
      return JSON.stringify(op.key ? { id: op.id, amountCents: "1", idempotencyKey: op.key } : { id: op.id, amountCents: "1" });
    case "GetBalance":
      return JSON.stringify({ id: op.id });
    case "ListBalanceTransactions":
      return JSON.stringify({ id: op.id, limit: op.limit });
    case "GetMyTotalBalance":
      return "{}";
  }
}

/** The REST gateway route, method and body. */
export function restRequest(op: Op, restBase: string): { method: "GET" | "POST"; path: string; body?: string; headers: Record<string, string> } {
  switch (op.rpc) {
    case "DebitBalance":
    case "CreditBalance":
      return {
        method: "POST",
        path: `${restBase}/${op.id}/${op.rpc === "DebitBalance" ? "debit" : "credit"}`,
        body: '{"amount_cents":1}',
        headers: op.key ? { "content-type": "application/json", "idempotency-key": op.key } : { "content-type": "application/json" },
      };
    case "GetBalance":
      return { method: "GET", path: `${restBase}/${op.id}`, headers: {} };
    case "ListBalanceTransactions":
      return { method: "GET", path: `${restBase}/${op.id}/transactions?limit=${op.limit}`, headers: {} };
    case "GetMyTotalBalance":
      return { method: "GET", path: `${restBase}/me/total`, headers: {} };
  }
}
