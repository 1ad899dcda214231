import { execFile } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestServer, type TestServer } from "@account-balance/server/dist/testing/server.js";

// Each example runs as a reader would run it, against a real server, so none can rot.

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
let server: TestServer;

beforeAll(async () => {
  server = await startTestServer();
});

afterAll(async () => {
  await server?.close();
});

async function example(command: string, args: string[], env: Record<string, string>): Promise<string> {
  const { stdout } = await run(command, args, { cwd: join(here, ".."), timeout: 30_000, env: { ...process.env, BASE_URL: server.baseUrl, ...env } });
  return stdout;
}

async function balanceOf(userId: string): Promise<string[]> {
  const rows = await server.sql<{ balance_cents: string }>("select balance_cents::text as balance_cents from account_balances where user_id = $1", [userId]);
  return rows.map((r) => r.balance_cents);
}

describe.each(["grpc", "connect"])("node-client.mjs over %s", (protocol) => {
  it("creates, credits, debits, reads and shows a typed refusal", async () => {
    const userId = `example-node-${protocol}`;
    const out = await example("node", ["examples/node-client.mjs"], { SERVICE_TOKEN: server.serviceToken, USER_ID: userId, PROTOCOL: protocol });
    expect(out).toMatch(new RegExp(`^created bal_[0-9A-Z]{26} for ${userId} over ${protocol}$`, "m"));
    expect(out).toContain("credited 1000, balance 1000\n");
    expect(out).toContain("debited 250, balance 750\n");
    expect(out).toMatch(/^balance bal_\w+: 750 EUR cents \(bigint\)$/m);
    expect(out).toContain("refused: INSUFFICIENT_BALANCE, available 750, required 10000\n");
    expect(out).toContain(`${userId} has 1 balance(s)\n`);
    expect(await balanceOf(userId)).toEqual(["750"]);
  });
});

it("grpc-js-caller.mjs calls with grpc-js only and reads the refusal's reason", async () => {
  const out = await example("node", ["examples/grpc-js-caller.mjs"], { SERVICE_TOKEN: server.serviceToken, USER_ID: "example-grpcjs" });
  expect(out).toMatch(/^created bal_[0-9A-Z]{26} for example-grpcjs$/m);
  expect(out).toContain("credited 1000, balance 1000\n");
  expect(out).toMatch(/^balance bal_\w+: 1000 EUR cents$/m);
  expect(out).toMatch(/^refused: FAILED_PRECONDITION INSUFFICIENT_BALANCE available=1000 message="[^%"]+"$/m);
  expect(await balanceOf("example-grpcjs")).toEqual(["1000"]);
});

it("curl.sh calls the REST gateway and Connect", async () => {
  const userId = "example-curl";
  const out = await example("bash", ["examples/curl.sh"], { SERVICE_TOKEN: server.serviceToken, SESSION_ID: await server.mintSession(userId), USER_ID: userId });
  const lines = out.split("\n");
  const after = (heading: string) => lines[lines.indexOf(heading) + 1] ?? "";
  const created = JSON.parse(after(`# create a balance for ${userId} (as a service)`));
  expect(created).toMatchObject({ success: true, data: { user_id: userId, balance_type: "credits", balance_cents: 0, currency: "EUR" } });
  const credits = lines.slice(lines.indexOf("# credit 1000 (as a service), with an Idempotency-Key: repeating it changes nothing") + 1).slice(0, 2).map((l) => JSON.parse(l));
  expect(credits.map((c) => c.data.balance.balance_cents)).toEqual([1000, 1000]);
  expect(credits[1].data.transaction.id).toBe(credits[0].data.transaction.id);
  expect(JSON.parse(after("# debit 250 (as the owner)")).data.balance.balance_cents).toBe(750);
  expect(JSON.parse(after("# my balances"))).toMatchObject({ success: true, data: [{ id: created.data.id, balance_cents: 750 }], meta: { total: 1 } });
  // Connect JSON: int64 as a string, camelCase names.
  expect(JSON.parse(after("# the same balance over Connect (JSON over HTTP/1.1)"))).toMatchObject({ data: { id: created.data.id, balanceCents: "750" } });
  expect(JSON.parse(after("# a debit beyond the balance is refused"))).toMatchObject({
    success: false,
    code: "INSUFFICIENT_BALANCE",
    details: { available_cents: 750, required_cents: 100000 },
  });
  expect(out).toContain("\nHTTP 400\n");
  expect(await balanceOf(userId)).toEqual(["750"]);
});
