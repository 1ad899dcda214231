import { afterAll, beforeAll, expect, it } from "vitest";
import { fileURLToPath } from "node:url";
import { rolldown } from "rolldown";
import { startTestServer, type TestServer } from "@account-balance/server/dist/testing/server.js";
import type * as Web from "./web.js";

// What a front end gets: the `web` entry bundled for the browser, as Vite does it (rolldown),
// then run with Node's own globals out of reach, against a real server. A Node-only import
// anywhere below `web` (a `node:` module, Buffer, process) fails here rather than in a
// customer's build or page.

const WEB_ENTRY = fileURLToPath(new URL("../dist/web.js", import.meta.url));
const NODE_ONLY = ["process", "Buffer", "require", "module", "global", "__dirname", "__filename"];

let server: TestServer;
let code: string;
const logs: string[] = [];

beforeAll(async () => {
  server = await startTestServer();
  const bundle = await rolldown({
    input: WEB_ENTRY,
    platform: "browser",
    onLog: (level, log) => {
      logs.push(`${level} ${log.code ?? ""}: ${log.message}`);
    },
  });
  try {
    const { output } = await bundle.generate({ format: "iife", name: "AccountBalanceClient" });
    code = output[0].code;
  } finally {
    await bundle.close();
  }
});

afterAll(async () => {
  await server?.close();
});

/** Evaluates the bundle with every Node-only global shadowed by `undefined`. */
function loadBundle(): typeof Web {
  const run = new Function(...NODE_ONLY, `${code}\nreturn AccountBalanceClient;`) as (...args: undefined[]) => typeof Web;
  return run(...NODE_ONLY.map(() => undefined));
}

it("bundles for the browser without warnings or Node modules", () => {
  expect(logs).toEqual([]);
  expect(code).not.toMatch(/\brequire\(|["']node:/);
});

it.each(["connect", "grpc-web"] as const)("moves money from the bundle over %s", async (protocol) => {
  const { createWebClients, AccountBalanceError } = loadBundle();
  const admin = createWebClients({ baseUrl: server.baseUrl, protocol, auth: { serviceToken: server.serviceToken } });
  const userId = `bundle-${protocol}`;
  const id = (await admin.balances.createBalance({ userId, currency: "EUR" })).data!.id;
  await admin.balances.creditBalance({ id, amountCents: 500n });

  const owner = createWebClients({ baseUrl: server.baseUrl, protocol, auth: { sessionId: await server.mintSession(userId) } });
  expect((await owner.balances.debitBalance({ id, amountCents: 200n })).data!.balance!.balanceCents).toBe(300n);
  const refused = await owner.balances.debitBalance({ id, amountCents: 301n }).then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(refused).toBeInstanceOf(AccountBalanceError);
  expect((refused as InstanceType<typeof AccountBalanceError>).reason).toBe("INSUFFICIENT_BALANCE");

  const rows = await server.sql<{ type: string; amount: string; after: string }>(
    "select transaction_type as type, amount_cents::text as amount, balance_after_cents::text as after from account_transactions where account_balance_id = $1 order by created_at, id",
    [id],
  );
  expect(rows.map((r) => [r.type, r.amount, r.after])).toEqual([
    ["credit", "500", "500"],
    ["debit", "200", "300"],
  ]);
});
