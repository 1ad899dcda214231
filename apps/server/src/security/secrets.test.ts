import { afterAll, describe, expect, it } from "vitest";
import { create, toBinary } from "@bufbuild/protobuf";
import { GetBalanceRequestSchema } from "@account-balance/proto/accountbalance/v1/account_balance_service_pb.js";
import { randomToken, startTestServer, type TestServer } from "../testing/server.js";
import { startFakeFlowless, type FakeFlowless } from "../testing/fake-flowless.js";
import { connectH2, frame } from "./raw.js";

// Secrets never reach logs or answers: service tokens, the bridge secret, session ids (a short
// redacted prefix is fine). Calls of every kind, failures included, are made against a local-
// session server and a Flowless one (with a fake Flowless that also fails); then everything the
// servers logged (debug level) and everything they answered (bodies and headers, every protocol)
// is searched for each secret and for a 12-character prefix of it.

const BASE = "/bridge-payment/account-balance";
const PREFIX = 12;

const closers: Array<() => Promise<void>> = [];
afterAll(async () => {
  while (closers.length > 0) await closers.pop()?.();
});

/** Everything a caller got back, as text. */
const answers: string[] = [];

async function rest(server: TestServer, method: string, path: string, headers: Record<string, string>, body?: unknown): Promise<number> {
  const res = await fetch(`${server.baseUrl}${path}`, {
    method,
    headers: { ...headers, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  answers.push(`${res.status} ${[...res.headers].map(([k, v]) => `${k}: ${v}`).join("\n")}\n${await res.text()}`);
  return res.status;
}

async function connect(server: TestServer, rpc: string, headers: Record<string, string>, body: unknown): Promise<number> {
  return rest(server, "POST", `/accountbalance.v1.AccountBalanceService/${rpc}`, { ...headers, "connect-protocol-version": "1" }, body);
}

async function grpc(server: TestServer, headers: Record<string, string>, id: string): Promise<number | undefined> {
  const h2 = await connectH2(server.port);
  try {
    const reply = await h2.call(
      "/accountbalance.v1.AccountBalanceService/GetBalance",
      headers,
      frame(toBinary(GetBalanceRequestSchema, create(GetBalanceRequestSchema, { id }))),
    );
    answers.push(JSON.stringify({ headers: reply.headers, trailers: reply.trailers }) + reply.data.toString("latin1"));
    return reply.grpcStatus;
  } finally {
    await h2.close();
  }
}

/** Every way a credential travels: header, bearer, query, cookie; on REST, Connect and gRPC. */
async function callEveryWay(server: TestServer, credential: string, balanceId: string): Promise<Array<number | undefined>> {
  const enc = encodeURIComponent(credential);
  return [
    await rest(server, "GET", `${BASE}/${balanceId}`, { "x-session-id": credential }),
    await rest(server, "GET", `${BASE}/me/balances`, { authorization: `Bearer ${credential}` }),
    await rest(server, "GET", `${BASE}/me/total?session_id=${enc}`, {}),
    await rest(server, "POST", `${BASE}/${balanceId}/debit`, { cookie: `session_id=${enc}` }, { amount_cents: 1 }),
    await rest(server, "POST", `${BASE}/${balanceId}/credit`, { "x-session-id": credential, "idempotency-key": `k-${randomToken(8)}` }, { amount_cents: 1 }),
    await connect(server, "GetBalance", { "x-session-id": credential }, { id: balanceId }),
    await connect(server, "ListMyBalances", { authorization: `Bearer ${credential}` }, {}),
    await grpc(server, { "x-session-id": credential }, balanceId),
    await grpc(server, { authorization: `Bearer ${credential}` }, balanceId),
  ];
}

function findings(secrets: Record<string, string>, logs: readonly string[]): string[] {
  const out: string[] = [];
  for (const [name, secret] of Object.entries(secrets)) {
    const needles = [secret, secret.slice(0, PREFIX), encodeURIComponent(secret).slice(0, PREFIX)];
    for (const line of logs) if (needles.some((n) => line.includes(n))) out.push(`log line shows ${name}: ${line.slice(0, 300)}`);
    for (const a of answers) if (needles.some((n) => a.includes(n))) out.push(`an answer shows ${name}: ${a.slice(0, 300)}`);
  }
  return out;
}

describe("secrets stay out of logs and answers", () => {
  it("local sessions and service tokens, valid, wrong and expired", async () => {
    const server = await startTestServer();
    closers.push(() => server.close());
    const secrets: Record<string, string> = {
      "the service token": server.serviceToken,
      "a wrong bearer that extends the service token": `${server.serviceToken}x`,
      "a valid session": await server.mintSession("sec-owner", "customer"),
      "an admin session": await server.mintSession("sec-admin", "admin"),
      "an expiring session": await server.mintSession("sec-owner", "customer", 1),
      "an unknown session id": `sess_${randomToken(40)}`,
    };
    const created = await fetch(`${server.baseUrl}${BASE}`, {
      method: "POST",
      headers: { authorization: `Bearer ${server.serviceToken}`, "content-type": "application/json" },
      body: JSON.stringify({ user_id: "sec-owner", balance_cents: 1000 }),
    });
    const balanceId = ((await created.json()) as { data: { id: string } }).data.id;

    const valid = await callEveryWay(server, secrets["a valid session"]!, balanceId);
    expect(valid.filter((s) => s === 200 || s === 0).length, "the valid session worked").toBeGreaterThanOrEqual(6);
    await callEveryWay(server, secrets["an admin session"]!, balanceId);
    await callEveryWay(server, server.serviceToken, balanceId);
    const wrong = await callEveryWay(server, secrets["a wrong bearer that extends the service token"]!, balanceId);
    expect(wrong.every((s) => s === 401 || s === 16), "a wrong token is refused").toBe(true);
    expect((await callEveryWay(server, secrets["an unknown session id"]!, balanceId)).every((s) => s === 401 || s === 16)).toBe(true);
    await new Promise((r) => setTimeout(r, 1200));
    expect((await callEveryWay(server, secrets["an expiring session"]!, balanceId)).every((s) => s === 401 || s === 16)).toBe(true);

    expect(server.logs.length, "the server logged something to search").toBeGreaterThan(0);
    expect(findings(secrets, server.logs)).toEqual([]);
  });

  it("Flowless sessions, the bridge secret, and Flowless failing (401, 500, down)", async () => {
    const bridgeSecret = `bridge-${randomToken(40)}`;
    const fake: FakeFlowless = await startFakeFlowless(bridgeSecret);
    let fakeOpen = true;
    closers.push(async () => {
      if (fakeOpen) await fake.close();
    });
    const server = await startTestServer({
      AUTH_PROVIDER: "flowless",
      FLOWLESS_API_URL: fake.url,
      BRIDGE_VALIDATION_SECRET: bridgeSecret,
      FLOWLESS_RETRIES: "1",
      FLOWLESS_TIMEOUT_MS: "1000",
    });
    closers.push(() => server.close());
    const secrets: Record<string, string> = {
      "the bridge secret": bridgeSecret,
      "the service token": server.serviceToken,
      "a valid Flowless session": `fl_${randomToken(40)}`,
      "an admin Flowless session": `fl_${randomToken(40)}`,
      "a session Flowless refuses": `fl_${randomToken(40)}`,
      "a session Flowless fails on": `fl_${randomToken(40)}`,
      "a session asked while Flowless is down": `fl_${randomToken(40)}`,
    };
    fake.sessions.set(secrets["a valid Flowless session"]!, { userId: "fl-owner", userType: "customer" });
    fake.sessions.set(secrets["an admin Flowless session"]!, { userId: "fl-admin", userType: "admin" });
    fake.sessions.set(secrets["a session Flowless fails on"]!, { userId: "fl-x", userType: "customer", failWith: 500 });

    const created = await fetch(`${server.baseUrl}${BASE}`, {
      method: "POST",
      headers: { authorization: `Bearer ${server.serviceToken}`, "content-type": "application/json" },
      body: JSON.stringify({ user_id: "fl-owner", balance_cents: 1000 }),
    });
    const balanceId = ((await created.json()) as { data: { id: string } }).data.id;

    const valid = await callEveryWay(server, secrets["a valid Flowless session"]!, balanceId);
    expect(valid.filter((s) => s === 200 || s === 0).length).toBeGreaterThanOrEqual(6);
    await callEveryWay(server, secrets["an admin Flowless session"]!, balanceId);
    expect((await callEveryWay(server, secrets["a session Flowless refuses"]!, balanceId)).every((s) => s === 401 || s === 16)).toBe(true);
    // 500 from Flowless: UNAVAILABLE (503 / gRPC 14), after a retry.
    expect((await callEveryWay(server, secrets["a session Flowless fails on"]!, balanceId)).every((s) => s === 503 || s === 14)).toBe(true);
    await fake.close();
    fakeOpen = false;
    expect((await callEveryWay(server, secrets["a session asked while Flowless is down"]!, balanceId)).every((s) => s === 503 || s === 14)).toBe(true);

    // The secret did travel where it belongs, so its absence elsewhere means something.
    expect(fake.calls.length).toBeGreaterThan(0);
    expect(fake.calls.every((c) => c.bridgeSecret === bridgeSecret)).toBe(true);
    // Failures were logged, with the session redacted to a short prefix.
    const failures = server.logs.filter((l) => l.includes("flowless"));
    expect(failures.length).toBeGreaterThan(0);
    expect(failures.some((l) => l.includes(secrets["a session Flowless fails on"]!.slice(0, 6)))).toBe(true);

    expect(findings(secrets, server.logs)).toEqual([]);
  });
});
