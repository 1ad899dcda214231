import { accessSync, constants, readFileSync, statSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import type { ServerResponse } from "node:http";
import type { NodeRequest, NodeResponse } from "./listen.js";

/**
 * The REST gateway's OpenAPI 3.1 document at GET /openapi.json and a reference page at
 * GET /docs (Swagger UI from the swagger-ui-dist package, served from node_modules: no CDN,
 * nothing loaded from another origin, a CSP that says so).
 *
 * The document is generated from the contract at build time (packages/protoc-gen-openapi,
 * exported as @account-balance/proto/openapi.json) and read once here. Its paths carry the
 * default base path; when the server runs under another REST_BASE_PATH they are rewritten.
 */
export interface DocsOptions {
  /** The server's REST_BASE_PATH; the document's paths are moved under it. Default: as generated. */
  basePathForServer?: string;
  /** Where the generated document is. Default: @account-balance/proto/openapi.json. */
  documentPath?: string;
  /** Told why a Swagger UI file could not be read (the request got a 503). */
  onError?: (err: unknown) => void;
}

const require = createRequire(import.meta.url);

/** Swagger UI files the page loads, and their content types. Anything else under /docs/ is 404. */
const ASSETS: Record<string, string> = {
  "swagger-ui.css": "text/css; charset=utf-8",
  "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
  "favicon-32x32.png": "image/png",
  "favicon-16x16.png": "image/png",
};

// Only this origin: scripts and styles are files (no inline script), the UI fetches
// /openapi.json and, with "Try it out", the API itself. Swagger UI sets inline styles and
// uses data: SVG icons.
const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "font-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

const PAGE = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Account Balance API reference</title>
<link rel="stylesheet" href="/docs/swagger-ui.css">
<link rel="icon" type="image/png" href="/docs/favicon-32x32.png" sizes="32x32">
<link rel="icon" type="image/png" href="/docs/favicon-16x16.png" sizes="16x16">
</head>
<body>
<noscript>This page needs JavaScript. The document itself is at <a href="/openapi.json">/openapi.json</a>.</noscript>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body>
</html>
`;

// validatorUrl: null keeps Swagger UI from sending the document to its online validator.
const INIT = `window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  defaultModelsExpandDepth: 0,
  displayOperationId: true,
  tryItOutEnabled: false,
});
`;

interface Served {
  /**
   * The bytes, or how to get them: Swagger UI's files (2 MB) are read when the page is first
   * opened and then kept, one copy for every request, so a server whose /docs nobody opens
   * does not carry them in its RSS (a 150 MB target, docs/benchmarks.md).
   */
  body: Buffer | (() => Promise<Buffer>);
  type: string;
  cache: string;
  csp?: boolean;
}

/** Returns a handler that answers /openapi.json, /docs and its assets, and returns false for any other request. */
export function createDocs(options: DocsOptions = {}): (req: NodeRequest, res: NodeResponse) => boolean {
  const document = loadDocument(options.documentPath ?? require.resolve("@account-balance/proto/openapi.json"), options.basePathForServer);
  const uiDir = dirname(require.resolve("swagger-ui-dist/package.json"));
  const files = new Map<string, Served>();
  files.set("/openapi.json", { body: Buffer.from(JSON.stringify(document)), type: "application/json; charset=utf-8", cache: "no-cache" });
  const page: Served = { body: Buffer.from(PAGE), type: "text/html; charset=utf-8", cache: "no-cache", csp: true };
  files.set("/docs", page);
  files.set("/docs/", page);
  files.set("/docs/init.js", { body: Buffer.from(INIT), type: "text/javascript; charset=utf-8", cache: "no-cache" });
  // The package is pinned, but the page is not versioned: revalidate after an hour.
  for (const [name, type] of Object.entries(ASSETS)) {
    files.set(`/docs/${name}`, { body: readOnce(join(uiDir, name)), type, cache: "public, max-age=3600" });
  }

  return (req, res) => {
    const path = (req.url ?? "").split("?", 1)[0]!;
    if (path !== "/openapi.json" && path !== "/docs" && !path.startsWith("/docs/")) return false;
    const file = files.get(path);
    const r = res as ServerResponse;
    if (file === undefined) {
      send(req, r, 404, { body: Buffer.from("not found\n"), type: "text/plain; charset=utf-8", cache: "no-store" });
      return true;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      send(req, r, 405, { body: Buffer.from("method not allowed\n"), type: "text/plain; charset=utf-8", cache: "no-store" }, { allow: "GET, HEAD" });
      return true;
    }
    const { body } = file;
    if (Buffer.isBuffer(body)) {
      send(req, r, 200, { ...file, body });
      return true;
    }
    body()
      .then(
        (bytes) => send(req, r, 200, { ...file, body: bytes }),
        (err: unknown) => {
          options.onError?.(err);
          send(req, r, 503, { body: Buffer.from("this file is not available\n"), type: "text/plain; charset=utf-8", cache: "no-store" });
        },
      )
      .catch(() => r.destroy());
    return true;
  };
}

/**
 * The file's bytes, read on the first call and shared by every later one (concurrent first
 * calls wait for the same read). Reading per request instead let streams that never take
 * their answer hold a copy each (932 MB with 500 of them). A missing or unreadable file
 * stops the start, as reading it at start did; a read that fails later (the package changed
 * under a running server) is a 503 and is tried again on the next call.
 */
function readOnce(path: string): () => Promise<Buffer> {
  if (!statSync(path).isFile()) throw new Error(`swagger-ui-dist: ${path} is not a file`);
  accessSync(path, constants.R_OK);
  let bytes: Promise<Buffer> | undefined;
  return () => {
    bytes ??= readFile(path).catch((err: unknown) => {
      bytes = undefined;
      throw err;
    });
    return bytes;
  };
}

/** The generated document with its paths moved under the server's base path, and servers set to this host. */
export function loadDocument(path: string, basePathForServer: string | undefined): Record<string, unknown> {
  const doc = JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;
  const from = typeof doc["x-rest-base-path"] === "string" ? (doc["x-rest-base-path"] as string) : "";
  const to = basePathForServer === undefined ? from : basePathForServer.replace(/\/+$/, "");
  if (to !== from) {
    const paths = (doc.paths ?? {}) as Record<string, unknown>;
    doc.paths = Object.fromEntries(Object.entries(paths).map(([p, item]) => [rebase(p, from, to), item]));
    doc["x-rest-base-path"] = to;
  }
  doc.servers = [{ url: "/", description: "This server" }];
  return doc;
}

function rebase(path: string, from: string, to: string): string {
  if (path === (from === "" ? "/" : from)) return to === "" ? "/" : to;
  const rest = from === "" ? path : path.startsWith(`${from}/`) ? path.slice(from.length) : undefined;
  return rest === undefined ? path : to + rest;
}

/** The response can no longer be written: over HTTP/2 the compat response has no `destroyed`, its stream does. */
function gone(res: NodeResponse): boolean {
  return "stream" in res ? res.stream.destroyed || res.stream.closed : res.destroyed;
}

function send(req: NodeRequest, res: ServerResponse, status: number, file: Served & { body: Buffer }, extra: Record<string, string> = {}): void {
  if (res.headersSent || gone(res)) return;
  const headers: Record<string, string | number> = {
    "content-type": file.type,
    "content-length": file.body.length,
    "cache-control": file.cache,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    ...extra,
  };
  if (file.csp) headers["content-security-policy"] = CSP;
  res.writeHead(status, headers);
  res.end(req.method === "HEAD" ? undefined : file.body);
}
