import net from "node:net";
import http from "node:http";
import http2 from "node:http2";

/**
 * One TCP port for HTTP/1.1 and cleartext HTTP/2 ("h2c with prior knowledge", which is what
 * gRPC clients speak). Node's `allowHTTP1` only works over TLS, so a plain net.Server reads the
 * first bytes of each connection: the HTTP/2 connection preface goes to an http2 server,
 * anything else to an http server. Both share one request handler.
 */

export type NodeRequest = http.IncomingMessage | http2.Http2ServerRequest;
export type NodeResponse = http.ServerResponse | http2.Http2ServerResponse;

export interface ListenOptions {
  port: number;
  host?: string;
  handler: (req: NodeRequest, res: NodeResponse) => void;
  /** Time to receive the first bytes and, on HTTP/1.1, the request headers (slowloris). Default 10 s. */
  headersTimeoutMs?: number;
  /** Time to receive a whole request, body included (HTTP/1.1 and each HTTP/2 stream, the latter checked every second). Default 30 s. */
  requestTimeoutMs?: number;
  /** A keep-alive HTTP/1.1 connection or an HTTP/2 session with no open stream closes after this. Default 65 s. */
  idleTimeoutMs?: number;
  /** HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS per connection. Default 1000. */
  maxConcurrentStreams?: number;
}

export interface Listening {
  readonly port: number;
  /**
   * Stops accepting connections, lets requests in flight finish, then resolves. Whatever is
   * still open after graceMs is cut. HTTP/2 clients get a GOAWAY, HTTP/1.1 keep-alive
   * connections are closed as soon as they are idle.
   */
  close(graceMs: number): Promise<void>;
}

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
const DRAIN_POLL_MS = 50;

export async function listen(options: ListenOptions): Promise<Listening> {
  const headersTimeoutMs = options.headersTimeoutMs ?? 10_000;
  const requestTimeoutMs = options.requestTimeoutMs ?? 30_000;
  const idleTimeoutMs = options.idleTimeoutMs ?? 65_000;
  let closing = false;

  const handler = (req: NodeRequest, res: NodeResponse) => {
    // A request that arrives on a keep-alive connection while draining is still served,
    // but the connection is not kept for another one.
    if (closing && res instanceof http.ServerResponse) res.shouldKeepAlive = false;
    options.handler(req, res);
  };

  const h1 = http.createServer(
    {
      headersTimeout: headersTimeoutMs,
      // Node requires requestTimeout >= headersTimeout when both are set.
      requestTimeout: Math.max(requestTimeoutMs, headersTimeoutMs),
      keepAliveTimeout: idleTimeoutMs,
      connectionsCheckingInterval: Math.min(1000, headersTimeoutMs),
    },
    handler,
  );

  const h2 = http2.createServer(
    { settings: { maxConcurrentStreams: options.maxConcurrentStreams ?? 1000 } },
    handler,
  );
  const sessions = new Set<http2.Http2Session>();
  const openStreams = new WeakMap<http2.Http2Session, number>();
  h2.on("session", (session: http2.ServerHttp2Session) => {
    sessions.add(session);
    openStreams.set(session, 0);
    session.on("close", () => sessions.delete(session));
    session.on("error", () => session.destroy());
    // Idle means no open stream: a quiet long-lived stream (health Watch) is not idle.
    session.setTimeout(idleTimeoutMs, () => {
      if ((openStreams.get(session) ?? 0) === 0) session.close();
    });
    if (closing) session.close();
  });
  // HTTP/1's requestTimeout has no HTTP/2 twin: a stream whose request body never finishes
  // arriving would hold its slot for ever. A sweep answers such streams as a timeout and
  // stops them. (A timer and two listeners per stream were 8 % of the bytes the server
  // promoted to the old generation under load; a stream leaves this map when it closes, so
  // the map never keeps a finished one alive.)
  const awaitingBody = new Map<http2.ServerHttp2Stream, { since: number; contentType: string }>();
  const sweep = setInterval(() => {
    const now = Date.now();
    for (const [stream, s] of awaitingBody) {
      if (stream.readableEnded) awaitingBody.delete(stream);
      else if (now - s.since >= requestTimeoutMs) {
        awaitingBody.delete(stream);
        endStalledStream(stream, s.contentType);
      }
    }
  }, Math.min(1000, requestTimeoutMs));
  sweep.unref();
  h2.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
    const session = stream.session;
    if (!session) return;
    openStreams.set(session, (openStreams.get(session) ?? 0) + 1);
    if (!stream.endAfterHeaders) awaitingBody.set(stream, { since: Date.now(), contentType: String(headers["content-type"] ?? "") });
    stream.once("close", () => {
      openStreams.set(session, (openStreams.get(session) ?? 1) - 1);
      awaitingBody.delete(stream);
    });
  });

  const sockets = new Set<net.Socket>();
  const undecided = new Set<net.Socket>();
  const tcp = net.createServer({ noDelay: true, keepAlive: true }, (socket) => {
    sockets.add(socket);
    socket.once("close", () => {
      sockets.delete(socket);
      undecided.delete(socket);
    });
    socket.on("error", () => socket.destroy());
    if (closing) {
      socket.destroy();
      return;
    }
    undecided.add(socket);
    // Nothing said within the headers timeout: drop it before it costs a parser.
    socket.setTimeout(headersTimeoutMs, () => socket.destroy());

    let seen: Buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
      const n = Math.min(seen.length, PREFACE.length);
      const isHttp2 = seen.subarray(0, n).equals(PREFACE.subarray(0, n));
      if (isHttp2 && seen.length < PREFACE.length) return;
      socket.removeListener("data", onData);
      socket.setTimeout(0);
      socket.pause();
      socket.unshift(seen);
      undecided.delete(socket);
      if (isHttp2) {
        // Http2Session reads the unshifted preface from the socket's buffer itself.
        h2.emit("connection", socket);
      } else {
        h1.emit("connection", socket);
        // The http parser reads the socket's handle directly; the bytes already read
        // reach it only through 'data', which needs the socket flowing again.
        socket.resume();
      }
    };
    socket.on("data", onData);
  });

  await new Promise<void>((resolve, reject) => {
    // "EADDRINUSE", "ENOTFOUND": named with the settings that chose the address.
    tcp.once("error", (err: NodeJS.ErrnoException) => {
      clearInterval(sweep);
      reject(new Error(`cannot listen on HOST ${options.host ?? "(all)"} PORT ${options.port}: ${err.code ?? err.message}`));
    });
    tcp.listen(options.port, options.host, () => {
      tcp.removeAllListeners("error");
      resolve();
    });
  });
  // http.Server starts its header/request timeout checks on 'listening'; it never listens
  // itself here, so start them by hand (otherwise headersTimeout is silently not enforced).
  h1.emit("listening");

  const address = tcp.address() as net.AddressInfo;
  let closed: Promise<void> | undefined;

  return {
    port: address.port,
    close(graceMs: number) {
      closed ??= new Promise<void>((resolve) => {
        closing = true;
        let poll: NodeJS.Timeout | undefined;
        let force: NodeJS.Timeout | undefined;
        // Resolves once every accepted socket has closed.
        tcp.close(() => {
          clearInterval(poll);
          clearInterval(sweep);
          clearTimeout(force);
          h1.close();
          resolve();
        });
        for (const socket of undecided) socket.destroy();
        for (const session of sessions) session.close();
        h1.closeIdleConnections();
        poll = setInterval(() => h1.closeIdleConnections(), DRAIN_POLL_MS);
        force = setTimeout(() => {
          for (const session of sessions) session.destroy();
          for (const socket of sockets) socket.destroy();
        }, graceMs);
      });
      return closed;
    },
  };
}

/**
 * Ends a stream whose request never arrived whole: gRPC callers get DEADLINE_EXCEEDED as a
 * trailers-only response, anyone else 408; then the stream is closed so the peer stops sending.
 */
function endStalledStream(stream: http2.ServerHttp2Stream, contentType: string): void {
  if (stream.closed || stream.destroyed) return;
  if (!stream.headersSent) {
    const headers: http2.OutgoingHttpHeaders = contentType.startsWith("application/grpc")
      ? {
          ":status": 200,
          "content-type": contentType,
          "grpc-status": "4",
          "grpc-message": "request not received in time",
        }
      : { ":status": 408, "content-type": "application/json" };
    try {
      stream.respond(headers, { endStream: contentType.startsWith("application/grpc") });
      if (!contentType.startsWith("application/grpc")) stream.end('{"error":"request not received in time"}');
    } catch {
      // The stream went away meanwhile; closing below is all that is left to do.
    }
  }
  stream.close(http2.constants.NGHTTP2_NO_ERROR);
}
