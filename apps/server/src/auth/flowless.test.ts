import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorInfoSchema } from "@account-balance/proto/google/rpc/error_details_pb.js";
import { createFlowlessProvider, type FlowlessOptions } from "./flowless.js";

const SECRET = "bridge-secret-0123456789abcdef0123456789";

interface Seen {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: http.IncomingHttpHeaders;
  body: string;
}

type Reply = (res: http.ServerResponse, seen: Seen) => void;

/** A fake Flowless: records every request and answers with the next scripted reply (the last one repeats). */
async function fakeFlowless(...replies: Reply[]) {
  const seen: Seen[] = [];
  const server = http.createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (chunk: string) => (body += chunk));
    req.on("end", () => {
      const url = new URL(req.url ?? "/", "http://fake");
      const entry: Seen = { method: req.method ?? "", path: url.pathname, query: url.searchParams, headers: req.headers, body };
      seen.push(entry);
      const reply = replies[Math.min(seen.length - 1, replies.length - 1)];
      reply?.(res, entry);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  closers.push(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (closers.length > 0) await closers.pop()?.();
});

function json(status: number, body: unknown): Reply {
  return (res) => {
    res.writeHead(status, { "Content-Type": "application/json" });
    res.end(JSON.stringify(body));
  };
}

/** The user id the fake gives a session id (user ids have no spaces). */
const userOf = (sid: string) => `user-of-${sid.replaceAll(" ", "_")}`;

/** A successful validation for whatever session id was asked about. */
function valid(expiresInMs = 3600_000, userType = "customer"): Reply {
  return (res, seen) => {
    const sid = seen.query.get("session_id") ?? "";
    const expiresAt = new Date(Date.now() + expiresInMs).toISOString();
    json(200, {
      success: true,
      user: { id: userOf(sid), email: "a@example.com", name: "Ann", user_type: userType, extra: 1 },
      session: { id: sid, userId: userOf(sid), expiresAt },
      expires_at: expiresAt,
    })(res, seen);
  };
}

const garbled: Reply = (res) => {
  res.writeHead(200, { "content-type": "application/json" });
  res.end("{not json");
};

const hang: Reply = () => {
  // Never answers: the client's timeout must end the attempt.
};

function provider(url: string, overrides: Partial<FlowlessOptions> = {}) {
  return createFlowlessProvider({
    apiUrl: url,
    bridgeSecret: SECRET,
    cacheTtlSeconds: 300,
    cacheMax: 100,
    retryBaseMs: 5,
    log: { warn: () => undefined },
    ...overrides,
  });
}

async function refusalOf(call: Promise<unknown>) {
  const err = await call.then(
    () => {
      throw new Error("expected a refusal");
    },
    (e: unknown) => e,
  );
  const ce = ConnectError.from(err);
  return { code: ce.code, reason: ce.findDetails(ErrorInfoSchema)[0]?.reason, message: ce.rawMessage };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("flowless provider", () => {
  it("sends exactly the bridge validation request and maps the reply", async () => {
    const fake = await fakeFlowless(valid());
    const sid = "abc/123+=&x y";
    const before = Date.now();
    const user = await provider(`${fake.url}/`).validate(sid);
    expect(user).toMatchObject({ userId: userOf(sid), userType: "customer", email: "a@example.com", name: "Ann" });
    expect(user?.expiresAt).toBeInstanceOf(Date);

    expect(fake.seen).toHaveLength(1);
    const req = fake.seen[0]!;
    expect(req.method).toBe("POST");
    expect(req.path).toBe("/auth/bridge/validate");
    expect(req.query.get("session_id")).toBe(sid);
    expect([...req.query.keys()]).toEqual(["session_id"]);
    expect(req.headers["x-bridge-secret"]).toBe(SECRET);
    expect(req.headers["content-type"]).toBe("application/json");
    const body = JSON.parse(req.body) as { timestamp: unknown; source: unknown };
    expect(body.source).toBe("account-balance");
    expect(typeof body.timestamp).toBe("number");
    expect(body.timestamp as number).toBeGreaterThanOrEqual(before);
    expect(body.timestamp as number).toBeLessThanOrEqual(Date.now());
  });

  it("caches successful validations: many calls, one upstream request", async () => {
    const fake = await fakeFlowless(valid());
    const p = provider(fake.url);
    for (let i = 0; i < 20; i++) expect((await p.validate("s1"))?.userId).toBe("user-of-s1");
    expect(fake.seen).toHaveLength(1);
    await p.validate("s2");
    expect(fake.seen).toHaveLength(2);
  });

  it("keeps a validation no longer than SESSION_CACHE_TTL_SECONDS", async () => {
    const fake = await fakeFlowless(valid());
    const p = provider(fake.url, { cacheTtlSeconds: 0.15 });
    await p.validate("s1");
    await p.validate("s1");
    expect(fake.seen).toHaveLength(1);
    await sleep(250);
    await p.validate("s1");
    expect(fake.seen).toHaveLength(2);
  });

  it("never serves a session from the cache past its expiry", async () => {
    // Valid for 200 ms, then Flowless says it is gone.
    const fake = await fakeFlowless(valid(200), json(401, { success: false, error: "Session expired" }));
    const p = provider(fake.url, { cacheTtlSeconds: 300 });
    expect(await p.validate("s1")).not.toBeNull();
    expect(await p.validate("s1")).not.toBeNull();
    expect(fake.seen).toHaveLength(1);
    await sleep(300);
    expect(await p.validate("s1")).toBeNull();
    expect(fake.seen).toHaveLength(2);
  });

  it("treats a session that has already expired as invalid and does not cache it", async () => {
    const fake = await fakeFlowless(valid(-1000));
    const p = provider(fake.url);
    expect(await p.validate("s1")).toBeNull();
    expect(await p.validate("s1")).toBeNull();
    expect(fake.seen).toHaveLength(2);
  });

  it("treats 401 and 403 as invalid, without retrying or caching", async () => {
    for (const status of [401, 403]) {
      const fake = await fakeFlowless(json(status, { success: false, error: "Invalid session" }));
      const p = provider(fake.url);
      expect(await p.validate("bad")).toBeNull();
      expect(fake.seen).toHaveLength(1);
      expect(await p.validate("bad")).toBeNull();
      expect(fake.seen).toHaveLength(2);
    }
  });

  it("treats a 200 with success false as invalid", async () => {
    const fake = await fakeFlowless(json(200, { success: false, error: "Invalid session" }));
    expect(await provider(fake.url).validate("bad")).toBeNull();
    expect(fake.seen).toHaveLength(1);
  });

  it("retries a 5xx and succeeds", async () => {
    const fake = await fakeFlowless(json(500, { success: false, error: "boom" }), json(503, {}), valid());
    const user = await provider(fake.url).validate("s1");
    expect(user?.userId).toBe("user-of-s1");
    expect(fake.seen).toHaveLength(3);
  });

  it("gives up after the retries with UNAVAILABLE", async () => {
    const fake = await fakeFlowless(json(502, {}));
    expect(await refusalOf(provider(fake.url, { retries: 3 }).validate("s1"))).toEqual({
      code: Code.Unavailable,
      reason: "UNAVAILABLE",
      message: "session service unavailable",
    });
    expect(fake.seen).toHaveLength(4);
  });

  it("does not retry a 429 or a garbled reply: UNAVAILABLE after one request", async () => {
    for (const reply of [json(429, { success: false, error: "slow down" }), garbled]) {
      const fake = await fakeFlowless(reply, valid());
      expect((await refusalOf(provider(fake.url, { retries: 3 }).validate("s1"))).reason).toBe("UNAVAILABLE");
      expect(fake.seen).toHaveLength(1);
    }
  });

  it("never follows a redirect: the secret goes nowhere else, and the other host's answer counts for nothing", async () => {
    const other = await fakeFlowless(valid(3600_000, "admin"));
    const fake = await fakeFlowless((res) => {
      res.writeHead(307, { location: `${other.url}/steal` });
      res.end();
    });
    const warned: string[] = [];
    const result = await refusalOf(provider(fake.url, { log: { warn: (m: string) => warned.push(m) } }).validate("s1"));
    expect(result.reason).toBe("UNAVAILABLE");
    expect(other.seen).toHaveLength(0);
    expect(fake.seen).toHaveLength(1);
    expect(warned).toEqual(["flowless: redirect not followed; check FLOWLESS_API_URL"]);
  });

  it("logs nobody in on a success it cannot read in full: UNAVAILABLE, nothing cached", async () => {
    const later = new Date(Date.now() + 3600_000).toISOString();
    const user = { id: "u1", user_type: "admin" };
    const replies: Array<[string, unknown]> = [
      ["an expiry that is not a time", { success: true, user, session: { userId: "u1", expiresAt: "tomorrow" }, expires_at: later }],
      ["no expiry at all", { success: true, user }],
      ["no user_type", { success: true, user: { id: "u1" }, expires_at: later }],
      ["session.userId of another user", { success: true, user, session: { userId: "u2", expiresAt: later } }],
      ["a user id the contract cannot address", { success: true, user: { id: "a b", user_type: "customer" }, expires_at: later }],
      ["no user", { success: true, expires_at: later }],
    ];
    for (const [what, body] of replies) {
      const fake = await fakeFlowless(json(200, body), valid());
      const p = provider(fake.url, { retries: 3 });
      expect((await refusalOf(p.validate("s1"))).reason, what).toBe("UNAVAILABLE");
      // Not retried, and not cached: the next call asks again (and the fake now answers well).
      expect(fake.seen, what).toHaveLength(1);
      expect((await p.validate("s1"))?.userId, what).toBe("user-of-s1");
      expect(fake.seen, what).toHaveLength(2);
    }
  });

  it("retries a reply whose body stops arriving (a timeout mid-body), then answers UNAVAILABLE", async () => {
    const fake = await fakeFlowless((res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.write('{"success": true, ');
      // The rest never comes.
    });
    const result = await refusalOf(provider(fake.url, { timeoutMs: 100, retries: 1 }).validate("s1"));
    expect(result.reason).toBe("UNAVAILABLE");
    expect(fake.seen).toHaveLength(2);
  });

  it("retries network errors (closed port), then answers UNAVAILABLE", async () => {
    const probe = http.createServer();
    await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    let calls = 0;
    const countingFetch: typeof fetch = (input, init) => {
      calls++;
      return fetch(input, init);
    };
    const result = await refusalOf(
      provider(`http://127.0.0.1:${port}`, { retries: 2, fetch: countingFetch }).validate("s1"),
    );
    expect(result.reason).toBe("UNAVAILABLE");
    expect(result.code).toBe(Code.Unavailable);
    expect(calls).toBe(3);
  });

  it("times out a hanging attempt, retries, and answers UNAVAILABLE", async () => {
    const fake = await fakeFlowless(hang);
    const started = Date.now();
    const result = await refusalOf(provider(fake.url, { timeoutMs: 100, retries: 1 }).validate("s1"));
    expect(result.reason).toBe("UNAVAILABLE");
    expect(fake.seen).toHaveLength(2);
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
    expect(Date.now() - started).toBeLessThan(2000);
  });

  it("recovers after a timeout when the next attempt answers", async () => {
    const fake = await fakeFlowless(hang, valid());
    const user = await provider(fake.url, { timeoutMs: 100, retries: 1 }).validate("s1");
    expect(user?.userId).toBe("user-of-s1");
    expect(fake.seen).toHaveLength(2);
  });

  it("shares one in-flight request among concurrent validations of the same id", async () => {
    const slowValid: Reply = (res, seen) => {
      setTimeout(() => valid()(res, seen), 100);
    };
    const fake = await fakeFlowless(slowValid);
    const p = provider(fake.url);
    const users = await Promise.all(Array.from({ length: 25 }, () => p.validate("s1")));
    expect(users.every((u) => u?.userId === "user-of-s1")).toBe(true);
    expect(fake.seen).toHaveLength(1);
    await Promise.all([p.validate("s2"), p.validate("s3"), p.validate("s2")]);
    expect(fake.seen).toHaveLength(3);
  });

  it("shares a failure too, and the next call asks again", async () => {
    const fake = await fakeFlowless(json(401, { success: false }), valid());
    const p = provider(fake.url);
    const results = await Promise.all([p.validate("s1"), p.validate("s1"), p.validate("s1")]);
    expect(results).toEqual([null, null, null]);
    expect(fake.seen).toHaveLength(1);
    expect((await p.validate("s1"))?.userId).toBe("user-of-s1");
    expect(fake.seen).toHaveLength(2);
  });

  it("never logs the full session id or the secret", async () => {
    const lines: string[] = [];
    const fake = await fakeFlowless(json(500, {}));
    const sid = "very-secret-session-id-0123456789";
    await refusalOf(
      provider(fake.url, { retries: 1, log: { warn: (m, f) => void lines.push(m + JSON.stringify(f)) } }).validate(sid),
    );
    expect(lines.length).toBeGreaterThan(0);
    const all = lines.join("\n");
    expect(all).not.toContain(sid);
    expect(all).not.toContain(SECRET);
    expect(all).toContain("very-s…");
  });
});
