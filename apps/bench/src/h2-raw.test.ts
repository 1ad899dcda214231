import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { encodeFrame, encodeHeaderBlock, Flag, FrameReader, FrameType, H2Connection, hpackInteger, hpackLiteral, type Frame } from "./h2-raw.js";

describe("HPACK literal encoding", () => {
  it("encodes integers with an N-bit prefix (RFC 7541 C.1)", () => {
    expect(hpackInteger(10, 5)).toEqual([0x0a]);
    expect(hpackInteger(1337, 5)).toEqual([0x1f, 0x9a, 0x0a]);
    expect(hpackInteger(42, 8)).toEqual([0x2a]);
  });

  it("encodes a literal without indexing, static name (RFC 7541 C.2.2)", () => {
    expect(hpackLiteral(":path", "/sample/path").toString("hex")).toBe("040c2f73616d706c652f70617468");
  });

  it("encodes a literal without indexing, new name", () => {
    expect(hpackLiteral("custom-key", "custom-header").toString("hex")).toBe(
      `000a${Buffer.from("custom-key").toString("hex")}0d${Buffer.from("custom-header").toString("hex")}`,
    );
  });

  it("puts pseudo-headers first", () => {
    const block = encodeHeaderBlock([
      ["te", "trailers"],
      [":method", "POST"],
    ]);
    expect(block.subarray(0, 6).toString("hex")).toBe(`0204${Buffer.from("POST").toString("hex")}`);
  });
});

describe("FrameReader", () => {
  const frames = Buffer.concat([
    encodeFrame(FrameType.HEADERS, Flag.END_HEADERS, 1, Buffer.from("abc")),
    encodeFrame(FrameType.DATA, 0, 1, Buffer.alloc(300, 7)),
    encodeFrame(FrameType.SETTINGS, Flag.ACK, 0),
    encodeFrame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 3, Buffer.from("z")),
  ]);
  const read = (chunks: Buffer[]) => {
    const out: Array<Omit<Frame, "payload"> & { payload: string }> = [];
    const reader = new FrameReader((f) => out.push({ ...f, payload: f.payload.toString("hex") }));
    for (const c of chunks) reader.push(c);
    return out;
  };
  const whole = read([frames]);

  it("reads several frames from one chunk", () => {
    expect(whole.map((f) => [f.type, f.flags, f.streamId, f.payload.length / 2])).toEqual([
      [FrameType.HEADERS, Flag.END_HEADERS, 1, 3],
      [FrameType.DATA, 0, 1, 300],
      [FrameType.SETTINGS, Flag.ACK, 0, 0],
      [FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 3, 1],
    ]);
  });

  it("reads the same frames however the bytes are split", () => {
    for (let cut = 1; cut < frames.length; cut++) {
      expect(read([frames.subarray(0, cut), frames.subarray(cut)])).toEqual(whole);
    }
    expect(read([...frames].map((b) => Buffer.from([b])))).toEqual(whole);
  });
});

describe("H2Connection against node:http2", () => {
  let server: http2.Http2Server | undefined;
  let conn: H2Connection | undefined;
  let open: http2.Http2Session[] = [];

  afterEach(async () => {
    for (const s of open) s.destroy();
    open = [];
    await conn?.close();
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
    conn = undefined;
    server = undefined;
  });

  /** A gRPC-ish server: the reply depends on the request's path. */
  async function start(
    settings: http2.Settings = {},
  ): Promise<{ seen: http2.IncomingHttpHeaders[]; pinged: Promise<boolean>; sessions: http2.Http2Session[] }> {
    const seen: http2.IncomingHttpHeaders[] = [];
    const sessions: http2.Http2Session[] = [];
    let pingResult: (ok: boolean) => void = () => undefined;
    const pinged = new Promise<boolean>((r) => (pingResult = r));
    server = http2.createServer({ settings });
    server.on("session", (session) => {
      sessions.push(session);
      open.push(session);
      // After our SETTINGS ACK the session is usable for a PING; our client must answer it.
      session.once("localSettings", () => session.ping((err) => pingResult(!err)));
    });
    server.on("stream", (stream, headers) => {
      seen.push(headers);
      stream.on("error", () => undefined); // streams the tests reset or refuse
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => {
        const path = String(headers[":path"]);
        if (path.endsWith("/Ok") || path.endsWith("/Slow")) {
          const reply = () => {
            if (stream.destroyed) return;
            stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
            stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
            // Echo the request message: the body arrived whole.
            stream.end(Buffer.concat(chunks));
          };
          if (path.endsWith("/Slow")) setTimeout(reply, 20);
          else reply();
        } else if (path.endsWith("/Error")) {
          stream.respond({ ":status": 200, "content-type": "application/grpc", "grpc-status": "5" }, { endStream: true });
        } else if (path.endsWith("/Reset")) {
          stream.close(http2.constants.NGHTTP2_CANCEL);
        } else {
          stream.respond({ ":status": 404 });
          stream.end("not found");
        }
      });
    });
    await new Promise<void>((r) => server!.listen(0, "127.0.0.1", () => r()));
    conn = new H2Connection("127.0.0.1", (server.address() as AddressInfo).port);
    return { seen, pinged, sessions };
  }

  const block = (path: string) =>
    encodeHeaderBlock([
      [":method", "POST"],
      [":scheme", "http"],
      [":path", path],
      [":authority", "localhost"],
      ["content-type", "application/grpc"],
      ["te", "trailers"],
      ["authorization", "Bearer t0ken"],
      ["x-session-id", "s1"],
    ]);
  const body = Buffer.from([0, 0, 0, 0, 3, 1, 2, 3]);

  it("sends headers a real HPACK decoder reads, and completes calls", async () => {
    const { seen, pinged } = await start();
    await Promise.all(Array.from({ length: 50 }, () => conn!.request(block("/svc/Ok"), body)));
    expect(seen).toHaveLength(50);
    expect(seen[0]).toMatchObject({
      ":method": "POST",
      ":scheme": "http",
      ":path": "/svc/Ok",
      ":authority": "localhost",
      "content-type": "application/grpc",
      te: "trailers",
      authorization: "Bearer t0ken",
      "x-session-id": "s1",
    });
    expect(await pinged).toBe(true);
  });

  it("rejects trailers-only responses, resets and non-gRPC answers", async () => {
    await start();
    await expect(conn!.request(block("/svc/Error"), body)).rejects.toThrow(/trailers-only/);
    await expect(conn!.request(block("/svc/Reset"), body)).rejects.toThrow(/RST_STREAM CANCEL/);
    await expect(conn!.request(block("/svc/Missing"), body)).rejects.toThrow(/without trailers/);
    await conn!.request(block("/svc/Ok"), body);
  });

  it("queues calls beyond the server's MAX_CONCURRENT_STREAMS", async () => {
    const { seen } = await start({ maxConcurrentStreams: 2 });
    await conn!.request(block("/svc/Ok"), body); // the server's SETTINGS have arrived
    await Promise.all(Array.from({ length: 10 }, () => conn!.request(block("/svc/Slow"), body)));
    expect(seen).toHaveLength(11);
  });

  it("fails calls the server will not process after a GOAWAY, and refuses new ones", async () => {
    const { sessions } = await start();
    await conn!.request(block("/svc/Ok"), body);
    const pending = conn!.request(block("/svc/Slow"), body);
    await new Promise((r) => setTimeout(r, 5));
    sessions[0]!.goaway(http2.constants.NGHTTP2_NO_ERROR, 1);
    await expect(pending).rejects.toThrow(/GOAWAY NO_ERROR/);
    await expect(conn!.request(block("/svc/Ok"), body)).rejects.toThrow(/GOAWAY/);
  });

  it("fails calls when it cannot connect", async () => {
    await start();
    const port = (server!.address() as AddressInfo).port;
    await conn!.close();
    await new Promise<void>((r) => server!.close(() => r()));
    server = undefined;
    conn = new H2Connection("127.0.0.1", port);
    await expect(conn.request(block("/svc/Ok"), body)).rejects.toThrow(/ECONNREFUSED/);
    await expect(conn.request(block("/svc/Ok"), body)).rejects.toThrow(/ECONNREFUSED/);
  });

  it("fails pending calls when the connection goes", async () => {
    const { sessions } = await start();
    const pending = conn!.request(block("/svc/Slow"), body);
    await new Promise((r) => setTimeout(r, 5));
    for (const s of sessions) s.destroy();
    await expect(pending).rejects.toThrow();
    await expect(conn!.request(block("/svc/Ok"), body)).rejects.toThrow();
  });
});
