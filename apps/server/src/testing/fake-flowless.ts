import http from "node:http";
import type { AddressInfo } from "node:net";

/** A session the fake knows: valid sessions carry a user; anything else answers 401. */
export interface FakeSession {
  userId: string;
  userType: string;
  email?: string;
  /** Default: one hour from now. */
  expiresAt?: Date;
  /** Answer this HTTP status instead (e.g. 500 to see retries). */
  failWith?: number;
}

export interface FlowlessCall {
  sessionId: string | null;
  bridgeSecret: string | undefined;
  contentType: string | undefined;
  body: unknown;
}

export interface FakeFlowless {
  /** Base URL to put in FLOWLESS_API_URL. */
  readonly url: string;
  readonly sessions: Map<string, FakeSession>;
  /** Every validation request received, in order. */
  readonly calls: FlowlessCall[];
  close(): Promise<void>;
}

/**
 * A stand-in for the Flowless auth service (spec section 5): `POST /auth/bridge/validate?session_id=`
 * with the bridge secret; known sessions get the documented success reply, unknown ones 401.
 */
export async function startFakeFlowless(secret: string): Promise<FakeFlowless> {
  const sessions = new Map<string, FakeSession>();
  const calls: FlowlessCall[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const url = new URL(req.url ?? "/", "http://fake");
      let body: unknown;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      } catch {
        body = undefined;
      }
      const sessionId = url.searchParams.get("session_id");
      const bridgeSecret = req.headers["x-bridge-secret"];
      calls.push({
        sessionId,
        bridgeSecret: typeof bridgeSecret === "string" ? bridgeSecret : undefined,
        contentType: req.headers["content-type"],
        body,
      });
      const reply = (status: number, json: unknown) => {
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify(json));
      };
      if (req.method !== "POST" || url.pathname !== "/auth/bridge/validate") return reply(404, { success: false, error: "not found" });
      if (bridgeSecret !== secret) return reply(403, { success: false, error: "bad bridge secret" });
      const session = sessionId === null ? undefined : sessions.get(sessionId);
      if (!session) return reply(401, { success: false, error: "invalid session" });
      if (session.failWith !== undefined) return reply(session.failWith, { success: false, error: "upstream trouble" });
      const expiresAt = (session.expiresAt ?? new Date(Date.now() + 3_600_000)).toISOString();
      return reply(200, {
        success: true,
        user: { id: session.userId, email: session.email ?? `${session.userId}@example.com`, name: session.userId, user_type: session.userType },
        session: { id: sessionId, userId: session.userId, expiresAt },
        expires_at: expiresAt,
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    sessions,
    calls,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
