import http from "node:http";
import http2 from "node:http2";
import net from "node:net";

/**
 * Clients that send exactly the bytes a test asks for: node:http for HTTP/1.1 (latin1 header
 * values, bodies that are not valid UTF-8, any method) and node:http2 for gRPC frames written
 * by hand (wrong lengths, compressed flag, garbage). fetch and the Connect/gRPC clients would
 * refuse or repair most of these inputs before they reach the server.
 */

export interface RawReply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export interface RawRequest {
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: Buffer | string;
  /** Default 20 s: a reply that does not come is a failure, not a hang. */
  timeoutMs?: number;
}

/** One HTTP/1.1 exchange over a keep-alive agent. */
export function http1(agent: http.Agent, port: number, req: RawRequest): Promise<RawReply> {
  // node:http frames a DELETE or OPTIONS body only when told its length: without it the bytes
  // would follow unframed and be read as the next request on the connection.
  const headers: Record<string, string | number> = { ...req.headers };
  if (req.body !== undefined && !Object.keys(headers).some((k) => /^(content-length|transfer-encoding)$/i.test(k))) {
    headers["content-length"] = Buffer.byteLength(req.body);
  }
  return new Promise((resolve, reject) => {
    const r = http.request(
      { host: "127.0.0.1", port, method: req.method, path: req.path, headers, agent },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on("error", reject);
      },
    );
    r.setTimeout(req.timeoutMs ?? 20_000, () => r.destroy(new Error(`no reply to ${req.method} ${req.path}`)));
    r.on("error", reject);
    r.end(req.body);
  });
}

export interface GrpcReply {
  /** HTTP :status (200 for any gRPC answer, including errors). */
  httpStatus: number;
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders;
  /** grpc-status from the trailers (or the headers, for a trailers-only answer); undefined if absent. */
  grpcStatus: number | undefined;
  grpcMessage: string | undefined;
  /** The response body: length-prefixed messages. */
  data: Buffer;
}

/** A 5-byte gRPC message prefix: compressed flag, then the big-endian length. */
export function frame(payload: Uint8Array, opts: { flag?: number; length?: number } = {}): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt8(opts.flag ?? 0, 0);
  head.writeUInt32BE(opts.length ?? payload.length, 1);
  return Buffer.concat([head, payload]);
}

/** The messages of a gRPC body (length-prefixed; gRPC-Web trailer frames and an incomplete tail are dropped). */
export function unframe(data: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let pos = 0;
  while (pos + 5 <= data.length) {
    const len = data.readUInt32BE(pos + 1);
    if (pos + 5 + len > data.length) break;
    if ((data.readUInt8(pos) & 0x80) === 0) out.push(data.subarray(pos + 5, pos + 5 + len));
    pos += 5 + len;
  }
  return out;
}

/** The trailers of a gRPC-Web body: the frame flagged 0x80 holds "name: value" lines. */
export function grpcWebTrailers(data: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let pos = 0;
  while (pos + 5 <= data.length) {
    const flag = data.readUInt8(pos);
    const len = data.readUInt32BE(pos + 1);
    const body = data.subarray(pos + 5, pos + 5 + len);
    if (flag & 0x80) {
      for (const line of body.toString("latin1").split("\r\n")) {
        const at = line.indexOf(":");
        if (at > 0) out[line.slice(0, at).trim().toLowerCase()] = line.slice(at + 1).trim();
      }
    }
    pos += 5 + len;
  }
  return out;
}

export interface H2 {
  readonly session: http2.ClientHttp2Session;
  /** One stream: headers, the body as given, END_STREAM unless `endStream` is false. */
  call(
    path: string,
    headers: Record<string, string>,
    body: Buffer,
    opts?: { endStream?: boolean; timeoutMs?: number },
  ): Promise<GrpcReply>;
  close(): Promise<void>;
}

export async function connectH2(port: number): Promise<H2> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on("error", () => undefined);
  await new Promise<void>((resolve, reject) => {
    session.once("connect", () => resolve());
    session.once("error", reject);
  });
  return {
    session,
    call(path, headers, body, opts = {}) {
      return new Promise((resolve, reject) => {
        const stream = session.request({
          ":method": "POST",
          ":path": path,
          "content-type": "application/grpc",
          te: "trailers",
          ...headers,
        });
        let resHeaders: http2.IncomingHttpHeaders = {};
        let trailers: http2.IncomingHttpHeaders = {};
        const chunks: Buffer[] = [];
        const timer = setTimeout(() => {
          stream.close(http2.constants.NGHTTP2_CANCEL);
          reject(new Error(`no gRPC reply on ${path} within ${opts.timeoutMs ?? 20_000} ms`));
        }, opts.timeoutMs ?? 20_000);
        stream.on("response", (h) => (resHeaders = h));
        stream.on("trailers", (t) => (trailers = t));
        stream.on("data", (c: Buffer) => chunks.push(c));
        stream.on("error", (e) => {
          clearTimeout(timer);
          reject(e);
        });
        stream.on("close", () => {
          clearTimeout(timer);
          const data = Buffer.concat(chunks);
          // gRPC-Web (also served over HTTP/2) puts its trailers in the body, in a frame flagged 0x80.
          const webTrailers = String(resHeaders["content-type"] ?? "").startsWith("application/grpc-web") ? grpcWebTrailers(data) : {};
          const statusText = trailers["grpc-status"] ?? resHeaders["grpc-status"] ?? webTrailers["grpc-status"];
          const message = trailers["grpc-message"] ?? resHeaders["grpc-message"] ?? webTrailers["grpc-message"];
          resolve({
            httpStatus: Number(resHeaders[":status"] ?? 0),
            headers: resHeaders,
            trailers,
            grpcStatus: statusText === undefined ? undefined : Number(statusText),
            grpcMessage: message === undefined ? undefined : String(message),
            data,
          });
        });
        if (opts.endStream === false) stream.write(body);
        else stream.end(body);
      });
    },
    close() {
      return new Promise<void>((resolve) => {
        if (session.closed || session.destroyed) return resolve();
        session.close(() => resolve());
        setTimeout(() => {
          session.destroy();
          resolve();
        }, 2000).unref();
      });
    },
  };
}

/** A bare TCP connection, for clients that misbehave below HTTP (slowloris, idle sockets). */
export function openSocket(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1", () => resolve(socket));
    socket.once("error", reject);
  });
}

/** Resolves with the time (ms since `since`) at which the socket closed. */
export function closedAt(socket: net.Socket, since: number): Promise<number> {
  return new Promise((resolve) => {
    if (socket.destroyed) return resolve(Date.now() - since);
    socket.once("close", () => resolve(Date.now() - since));
  });
}

/** Everything a socket received until it closed. */
export function collect(socket: net.Socket): { text: () => string } {
  const chunks: Buffer[] = [];
  socket.on("data", (c: Buffer) => chunks.push(c));
  socket.on("error", () => undefined);
  return { text: () => Buffer.concat(chunks).toString("latin1") };
}
