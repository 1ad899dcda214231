import { readFileSync } from "node:fs";
import http2 from "node:http2";
import { dirname, join } from "node:path";
import { createRequire } from "node:module";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createDocs, loadDocument, type DocsOptions } from "./docs.js";
import { listen, type Listening, type NodeRequest, type NodeResponse } from "./listen.js";

const require = createRequire(import.meta.url);
const generated = require.resolve("@account-balance/proto/openapi.json");
const uiFile = (name: string) => join(dirname(require.resolve("swagger-ui-dist/package.json")), name);
const DEFAULT_BASE = "/bridge-payment/account-balance";

// Every read of a Swagger UI file, counted; a test can hold reads at a gate or fail one.
const reads = vi.hoisted(() => ({ count: 0, gate: undefined as Promise<void> | undefined, failNext: false }));
vi.mock("node:fs/promises", async (importOriginal) => {
  const actual = await importOriginal<typeof import("node:fs/promises")>();
  const readFile = async (...args: Parameters<typeof actual.readFile>) => {
    reads.count++;
    if (reads.gate) await reads.gate;
    if (reads.failNext) {
      reads.failNext = false;
      throw Object.assign(new Error("EIO: i/o error, read"), { code: "EIO" });
    }
    return actual.readFile(...args);
  };
  return { ...actual, readFile, default: { ...actual, readFile } };
});

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
    const bundle = await fetch(url("/docs/swagger-ui-bundle.js"));
    expect([bundle.status, bundle.headers.get("content-type")]).toEqual([200, "text/javascript; charset=utf-8"]);
    expect(Buffer.from(await bundle.arrayBuffer()).equals(readFileSync(uiFile("swagger-ui-bundle.js")))).toBe(true);

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

  it("reads a Swagger UI file once, when it is first asked for, and shares it", async () => {
    reads.count = 0;
    let open!: () => void;
    reads.gate = new Promise<void>((resolve) => (open = resolve));
    const { url } = await start();
    expect(reads.count).toBe(0);
    const onDisk = readFileSync(uiFile("swagger-ui-bundle.js"));
    // Three first requests at once (a HEAD among them) wait for one read.
    const first = [fetch(url("/docs/swagger-ui-bundle.js")), fetch(url("/docs/swagger-ui-bundle.js")), fetch(url("/docs/swagger-ui-bundle.js"), { method: "HEAD" })];
    await vi.waitFor(() => expect(reads.count).toBe(1));
    open();
    reads.gate = undefined;
    const [a, b, head] = await Promise.all(first);
    for (const res of [a!, b!]) expect(Buffer.from(await res.arrayBuffer()).equals(onDisk)).toBe(true);
    expect([head!.status, head!.headers.get("content-length"), await head!.text()]).toEqual([200, String(onDisk.length), ""]);
    // A later request uses the same bytes.
    expect(Buffer.from(await (await fetch(url("/docs/swagger-ui-bundle.js"))).arrayBuffer()).equals(onDisk)).toBe(true);
    expect(reads.count).toBe(1);
  });

  it("answers 503 without a path when a file cannot be read, tells onError, and reads again next time", async () => {
    reads.count = 0;
    reads.failNext = true;
    const errors: unknown[] = [];
    const docs = createDocs({ onError: (err) => errors.push(err) });
    const server = await listen({ port: 0, host: "127.0.0.1", handler: (req, res) => void docs(req, res) });
    open.push(server);
    const at = `http://127.0.0.1:${server.port}/docs/swagger-ui.css`;
    const failed = await fetch(at);
    expect([failed.status, await failed.text(), failed.headers.get("cache-control")]).toEqual([503, "this file is not available\n", "no-store"]);
    expect(errors.map((e) => (e as NodeJS.ErrnoException).code)).toEqual(["EIO"]);
    const again = await fetch(at);
    expect(again.status).toBe(200);
    expect(Buffer.from(await again.arrayBuffer()).equals(readFileSync(uiFile("swagger-ui.css")))).toBe(true);
    expect(reads.count).toBe(2);
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

      // A stream reset before its file is read leaves nothing broken: the next one gets it whole.
      const cancelled = session.request({ ":path": "/docs/swagger-ui-bundle.js" });
      cancelled.on("error", () => {});
      cancelled.close(http2.constants.NGHTTP2_CANCEL);
      const bytes = await new Promise<Buffer>((resolve, reject) => {
        const stream = session.request({ ":path": "/docs/swagger-ui-bundle.js" });
        const chunks: Buffer[] = [];
        stream.on("data", (c: Buffer) => chunks.push(c));
        stream.on("end", () => resolve(Buffer.concat(chunks)));
        stream.on("error", reject);
      });
      expect(bytes.equals(readFileSync(uiFile("swagger-ui-bundle.js")))).toBe(true);
    } finally {
      session.close();
    }
  });
});
