import type { ServerResponse } from "node:http";
import type { NodeRequest, NodeResponse } from "./listen.js";

/**
 * Kubernetes-style probes. /healthz: the process is up and answering. /readyz: it can take
 * traffic (database reachable, migrations applied). The reason on 503 is a short fixed
 * phrase, never the underlying error.
 */

export interface Readiness {
  ok: boolean;
  detail?: string;
}

export interface ProbeOptions {
  ready: () => Promise<Readiness>;
  /** Bound on how long /readyz waits for ready(). Default 2000 ms. */
  readyTimeoutMs?: number;
}

/** Returns a handler that answers the probe paths and returns false for any other request. */
export function createProbes(options: ProbeOptions): (req: NodeRequest, res: NodeResponse) => boolean {
  const readyTimeoutMs = options.readyTimeoutMs ?? 2000;
  return (req, res) => {
    const path = (req.url ?? "").split("?", 1)[0];
    if (path !== "/healthz" && path !== "/readyz") return false;
    if (req.method !== "GET" && req.method !== "HEAD") {
      send(req, res, 405, { status: "error", reason: "method not allowed" }, { allow: "GET, HEAD" });
      return true;
    }
    if (path === "/healthz") {
      send(req, res, 200, { status: "ok" });
      return true;
    }
    void withTimeout(options.ready(), readyTimeoutMs).then(
      (r) => send(req, res, r.ok ? 200 : 503, r.ok ? { status: "ok" } : { status: "unavailable", reason: "not ready" }),
      () => send(req, res, 503, { status: "unavailable", reason: "not ready" }),
    );
    return true;
  };
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("timeout")), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

function send(req: NodeRequest, res: NodeResponse, status: number, body: unknown, extra: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  // The http and http2 compatibility responses share this surface.
  const r = res as ServerResponse;
  r.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    "cache-control": "no-store",
    ...extra,
  });
  r.end(req.method === "HEAD" ? undefined : text);
}
