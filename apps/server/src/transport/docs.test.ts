import { readFileSync } from "node:fs";
import http2 from "node:http2";
import { dirname, join } from "node:path";
import { createRequire } from "node:module";
import { afterEach, describe, expect, it } from "vitest";
import { createDocs, loadDocument, type DocsOptions } from "./docs.js";
import { listen, type Listening, type NodeRequest, type NodeResponse } from "./listen.js";

const require = createRequire(import.meta.url);
const generated = require.resolve("@account-balance/proto/openapi.json");
const uiFile = (name: string) => join(dirname(require.resolve("swagger-ui-dist/package.json")), name);
const DEFAULT_BASE = "/bridge-payment/account-balance";

const open: Listening[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close(0)));
});

async function start(options?: DocsOptions) {
  const docs = createDocs(options);
  let fallthrough = 0;
  const handler = (req: NodeRequest, res: NodeResponse) => {
    if (docs(req, res)) return;
    fallthrough++;
    res.writeHead(418);
    res.end();
  };
  const server = await listen({ port: 0, host: "127.0.0.1", handler });
  open.push(server);
  return { url: (path: string) => `http://127.0.0.1:${server.port}${path}`, port: server.port, fallthrough: () => fallthrough };
}

describe("the generated document", () => {
  it("keeps the generated paths under the default base path, and moves them under another one", () => {
    const asBuilt = loadDocument(generated, undefined) as { paths: Record<string, unknown> };
    expect(Object.keys(asBuilt.paths)).toContain(DEFAULT_BASE);
    expect(Object.keys(asBuilt.paths)).toContain(`${DEFAULT_BASE}/{id}/credit`);

    const moved = loadDocument(generated, "/v2/wallet") as { paths: Record<string, unknown>; "x-rest-base-path": string };
    const paths = Object.keys(moved.paths);
    expect(paths).toHaveLength(Object.keys(asBuilt.paths).length);
    expect(paths).toContain("/v2/wallet");
    expect(paths).toContain("/v2/wallet/me/balances");
    expect(paths).toContain("/v2/wallet/users/{user_id}/total");
    expect(paths.filter((p) => p.startsWith(DEFAULT_BASE))).toEqual([]);
    expect(moved["x-rest-base-path"]).toBe("/v2/wallet");
    // The same operation object under its new path.
    expect(moved.paths["/v2/wallet/{id}"]).toEqual(asBuilt.paths[`${DEFAULT_BASE}/{id}`]);
  });
});

describe("createDocs", () => {
  it("serves /openapi.json, /docs and the page's assets, and nothing else", async () => {
    const { url, fallthrough } = await start({ basePathForServer: "/v2/wallet" });
    const res = await fetch(url("/openapi.json"));
    expect(res.status).toBe(200);
    const doc = (await res.json()) as { openapi: string; paths: Record<string, unknown>; servers: unknown };
    expect(doc.openapi).toBe("3.1.0");
    expect(Object.keys(doc.paths)).toContain("/v2/wallet/{id}/debit");
    expect(doc.servers).toEqual([{ url: "/", description: "This server" }]);

    const page = await fetch(url("/docs"));
    expect(page.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(page.headers.get("content-security-policy")).toContain("connect-src 'self'");
    expect(await page.text()).toContain('<script src="/docs/swagger-ui-bundle.js"></script>');
    expect((await fetch(url("/docs/"))).status).toBe(200);
    // Concurrent first requests share one read; every answer is the whole file.
    const onDisk = readFileSync(uiFile("swagger-ui-bundle.js"));
    const bundles = await Promise.all([1, 2, 3].map(() => fetch(url("/docs/swagger-ui-bundle.js"))));
    for (const bundle of bundles) {
      expect([bundle.status, bundle.headers.get("content-type")]).toEqual([200, "text/javascript; charset=utf-8"]);
      expect(Buffer.from(await bundle.arrayBuffer()).equals(onDisk)).toBe(true);
    }
    const headOfBundle = await fetch(url("/docs/swagger-ui-bundle.js"), { method: "HEAD" });
    expect([headOfBundle.status, headOfBundle.headers.get("content-length"), await headOfBundle.text()]).toEqual([200, String(onDisk.length), ""]);

    expect((await fetch(url("/docs/index.html"))).status).toBe(404);
    expect((await fetch(url("/docs/..%2fpackage.json"))).status).toBe(404);
    const head = await fetch(url("/openapi.json"), { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe("");
    const post = await fetch(url("/docs"), { method: "POST" });
    expect([post.status, post.headers.get("allow")]).toEqual([405, "GET, HEAD"]);

    expect(fallthrough()).toBe(0);
    expect((await fetch(url("/documents"))).status).toBe(418);
    expect((await fetch(url("/bridge-payment/account-balance/docs"))).status).toBe(418);
    expect(fallthrough()).toBe(2);
  });

  it("does not read Swagger UI's files until the page is opened", () => {
    // 2 MB of every server's RSS otherwise. Forty instances kept alive: holding the files
    // at start would take 40 × 1.97 MB, far beyond anything freed meanwhile.
    const before = process.memoryUsage().arrayBuffers;
    const kept = Array.from({ length: 40 }, () => createDocs());
    expect(kept).toHaveLength(40);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(10_000_000);
  });

  it("answers over HTTP/2 too", async () => {
    const { port } = await start();
    const session = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const [status, body] = await new Promise<[number, string]>((resolve, reject) => {
        const stream = session.request({ ":path": "/openapi.json" });
        let status = 0;
        let text = "";
        stream.on("response", (h) => (status = Number(h[":status"])));
        stream.on("data", (c: Buffer) => (text += c.toString("utf8")));
        stream.on("end", () => resolve([status, text]));
        stream.on("error", reject);
      });
      expect(status).toBe(200);
      expect(Object.keys((JSON.parse(body) as { paths: object }).paths)).toContain(`${DEFAULT_BASE}/me/balances`);
    } finally {
      session.close();
    }
  });
});
