import http2 from "node:http2";
import { afterEach, describe, expect, it } from "vitest";
import { listen, type Listening, type NodeRequest, type NodeResponse } from "./listen.js";
import { createProbes, type Readiness } from "./probes.js";

const open: Listening[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close(0)));
});

async function start(ready: () => Promise<Readiness>, readyTimeoutMs?: number) {
  const probes = createProbes({ ready, readyTimeoutMs });
  let fallthrough = 0;
  const handler = (req: NodeRequest, res: NodeResponse) => {
    if (probes(req, res)) return;
    fallthrough++;
    res.writeHead(418);
    res.end();
  };
  const server = await listen({ port: 0, host: "127.0.0.1", handler });
  open.push(server);
  const url = (path: string) => `http://127.0.0.1:${server.port}${path}`;
  return { server, url, fallthrough: () => fallthrough };
}

async function get(url: string, init?: RequestInit): Promise<[number, unknown]> {
  const res = await fetch(url, init);
  const text = await res.text();
  return [res.status, text === "" ? "" : JSON.parse(text)];
}

describe("probes", () => {
  it("/healthz is 200 while the process is up, even when not ready", async () => {
    const { url } = await start(async () => ({ ok: false, detail: "database unreachable" }));
    expect(await get(url("/healthz"))).toEqual([200, { status: "ok" }]);
  });

  it("/readyz follows ready()", async () => {
    let state: Readiness = { ok: true };
    const { url } = await start(async () => state);
    expect(await get(url("/readyz"))).toEqual([200, { status: "ok" }]);
    state = { ok: false, detail: "2 migration(s) not applied at postgres://admin:pw@db" };
    const [status, body] = await get(url("/readyz"));
    expect(status).toBe(503);
    // A short fixed reason: the detail is for logs, not for whoever can reach the port.
    expect(body).toEqual({ status: "unavailable", reason: "not ready" });
  });

  it("/readyz is 503 when ready() throws or hangs", async () => {
    const throwing = await start(async () => {
      throw new Error("ECONNREFUSED 10.0.0.5:5432");
    });
    expect(await get(throwing.url("/readyz"))).toEqual([503, { status: "unavailable", reason: "not ready" }]);

    const hanging = await start(() => new Promise(() => {}), 100);
    const started = Date.now();
    expect((await get(hanging.url("/readyz")))[0]).toBe(503);
    expect(Date.now() - started).toBeLessThan(1500);
  });

  it("ignores the query string, answers HEAD and refuses other methods", async () => {
    const { url } = await start(async () => ({ ok: true }));
    expect(await get(url("/healthz?verbose=1"))).toEqual([200, { status: "ok" }]);
    const head = await fetch(url("/readyz"), { method: "HEAD" });
    expect(head.status).toBe(200);
    const post = await fetch(url("/healthz"), { method: "POST" });
    expect(post.status).toBe(405);
    expect(post.headers.get("allow")).toBe("GET, HEAD");
  });

  it("leaves every other path to the next handler", async () => {
    const { url, fallthrough } = await start(async () => ({ ok: true }));
    for (const path of ["/", "/healthz/x", "/readyzz", "/bridge-payment/account-balance/healthz"]) {
      expect((await fetch(url(path))).status).toBe(418);
    }
    expect(fallthrough()).toBe(4);
  });

  it("answers over HTTP/2 too", async () => {
    const { server } = await start(async () => ({ ok: false }));
    const session = http2.connect(`http://127.0.0.1:${server.port}`);
    const status = await new Promise<number>((resolve, reject) => {
      const s = session.request({ ":path": "/readyz" });
      s.on("response", (h) => resolve(Number(h[":status"])));
      s.on("error", reject);
      s.resume();
    });
    session.close();
    expect(status).toBe(503);
  });
});
