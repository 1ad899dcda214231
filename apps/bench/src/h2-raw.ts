import net from "node:net";

/**
 * Just enough cleartext HTTP/2 (RFC 9113, h2c with prior knowledge) to send unary gRPC
 * calls at a small CPU cost. node:http2 spends ~200 µs of CPU per stream here (a JS stream
 * object, events, one write per frame); this writes the request frames itself, sends every
 * frame queued in one tick in one socket.write, and never decodes a response header. On
 * this machine a wake-up from epoll is the dearest thing left (~100-200 µs of CPU), so the
 * remaining cost per call falls as more responses arrive per read.
 *
 * Not implemented, as a unary benchmark client does not need it: server push (disabled in
 * our SETTINGS), priorities, padding on send, CONTINUATION on send (header blocks are small),
 * HPACK decoding (see H2Connection.request for what is read of a response instead).
 */

export const FRAME_HEADER = 9;

export const FrameType = {
  DATA: 0x0,
  HEADERS: 0x1,
  PRIORITY: 0x2,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PUSH_PROMISE: 0x5,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;

export const Flag = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4 } as const;

const Setting = { HEADER_TABLE_SIZE: 0x1, ENABLE_PUSH: 0x2, MAX_CONCURRENT_STREAMS: 0x3, INITIAL_WINDOW_SIZE: 0x4, MAX_FRAME_SIZE: 0x5 } as const;

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
const MAX_WINDOW = 2 ** 31 - 1;
const DEFAULT_WINDOW = 65_535;
const DEFAULT_MAX_FRAME = 16_384;
const MAX_STREAM_ID = 2 ** 31 - 1;

export function writeFrameHeader(buf: Buffer, offset: number, length: number, type: number, flags: number, streamId: number): void {
  buf.writeUIntBE(length, offset, 3);
  buf[offset + 3] = type;
  buf[offset + 4] = flags;
  buf.writeUInt32BE(streamId & MAX_STREAM_ID, offset + 5);
}

export function encodeFrame(type: number, flags: number, streamId: number, payload: Uint8Array = new Uint8Array(0)): Buffer {
  const buf = Buffer.allocUnsafe(FRAME_HEADER + payload.length);
  writeFrameHeader(buf, 0, payload.length, type, flags, streamId);
  buf.set(payload, FRAME_HEADER);
  return buf;
}

// --- HPACK (RFC 7541), encoding side only ---------------------------------------------

/** Static-table indices of the names we send (RFC 7541 Appendix A). */
const STATIC_NAME: Record<string, number> = {
  ":authority": 1,
  ":method": 2,
  ":path": 4,
  ":scheme": 6,
  authorization: 23,
  "content-type": 31,
};

/** An integer with an N-bit prefix (RFC 7541 §5.1); `first` holds the representation's pattern bits. */
export function hpackInteger(value: number, prefixBits: number, first = 0): number[] {
  const max = (1 << prefixBits) - 1;
  if (value < max) return [first | value];
  const out = [first | max];
  let rest = value - max;
  while (rest >= 128) {
    out.push((rest % 128) | 0x80);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
  return out;
}

function hpackString(s: string): Buffer {
  // H bit 0: raw octets. Huffman would save a few bytes on a loopback socket, not worth a coder.
  const bytes = Buffer.from(s, "latin1");
  return Buffer.concat([Buffer.from(hpackInteger(bytes.length, 7)), bytes]);
}

/**
 * One header as "literal header field without indexing" (§6.2.2): it never enters the
 * server's dynamic table, so there is no encoder state to keep in step with the peer.
 */
export function hpackLiteral(name: string, value: string): Buffer {
  if (name !== name.toLowerCase()) throw new Error(`HTTP/2 header names are lower case: ${name}`);
  const index = STATIC_NAME[name];
  return index !== undefined
    ? Buffer.concat([Buffer.from(hpackInteger(index, 4, 0x00)), hpackString(value)])
    : Buffer.concat([Buffer.from([0x00]), hpackString(name), hpackString(value)]);
}

/** A header block of literals, pseudo-headers first as HTTP/2 requires. */
export function encodeHeaderBlock(headers: ReadonlyArray<readonly [string, string]>): Buffer {
  const pseudo = headers.filter(([n]) => n.startsWith(":"));
  const regular = headers.filter(([n]) => !n.startsWith(":"));
  return Buffer.concat([...pseudo, ...regular].map(([n, v]) => hpackLiteral(n, v)));
}

// --- Reading frames --------------------------------------------------------------------

export interface Frame {
  type: number;
  flags: number;
  streamId: number;
  /** A view into the received bytes, valid only during the callback (the read buffer is reused). */
  payload: Buffer;
}

/** Cuts a byte stream into frames, whatever the TCP chunking: frames split across chunks, or many in one. */
export class FrameReader {
  private rest: Buffer | undefined;

  constructor(private readonly onFrame: (frame: Frame) => void) {}

  push(chunk: Buffer): void {
    let buf = chunk;
    if (this.rest) {
      buf = Buffer.concat([this.rest, chunk]);
      this.rest = undefined;
    }
    let off = 0;
    while (buf.length - off >= FRAME_HEADER) {
      const length = buf.readUIntBE(off, 3);
      const end = off + FRAME_HEADER + length;
      if (end > buf.length) break;
      this.onFrame({
        type: buf[off + 3]!,
        flags: buf[off + 4]!,
        streamId: buf.readUInt32BE(off + 5) & MAX_STREAM_ID,
        payload: buf.subarray(off + FRAME_HEADER, end),
      });
      off = end;
    }
    // Copied: the chunk may be a read buffer that the next read overwrites.
    if (off < buf.length) this.rest = Buffer.from(buf.subarray(off));
  }
}

// --- The connection --------------------------------------------------------------------

interface Stream {
  resolve(): void;
  reject(err: Error): void;
  dataBytes: number;
}

interface Pending {
  headerBlock: Buffer;
  body: Buffer;
  stream: Stream;
}

export class H2Error extends Error {}

/**
 * One HTTP/2 connection on which each request is a new stream: HEADERS, then the body in
 * DATA with END_STREAM. Frames queue and go out together in one write per tick.
 */
export class H2Connection {
  private readonly socket: net.Socket;
  private readonly reader = new FrameReader((f) => this.onFrame(f));
  private readonly streams = new Map<number, Stream>();
  private out: Buffer[] = [];
  private flushScheduled = false;
  private nextStreamId = 1;
  private failed: Error | undefined;

  // The peer's limits on what we send.
  private maxFrameSize = DEFAULT_MAX_FRAME;
  private maxConcurrent = Infinity;
  private streamSendWindow = DEFAULT_WINDOW;
  private connSendWindow = DEFAULT_WINDOW;
  /** Request bodies waiting for connection window (the server grants it as it reads). */
  private blockedData: Array<{ streamId: number; body: Buffer }> = [];
  /** Requests waiting for a stream slot under the peer's MAX_CONCURRENT_STREAMS. */
  private waiting: Pending[] = [];

  /** DATA received since the last WINDOW_UPDATE we sent. */
  private unacked = 0;

  constructor(host: string, port: number) {
    const readBuffer = Buffer.allocUnsafe(64 * 1024);
    this.socket = net.connect({
      host,
      port,
      // Coalesced writes make Nagle pointless; with it a write could wait for a delayed ACK.
      noDelay: true,
      // Reads land in one reused buffer and skip the Readable stream machinery ('data'
      // events, a new Buffer per read): a measurable share of the CPU per call here.
      onread: {
        buffer: readBuffer,
        callback: (n: number) => {
          try {
            this.reader.push(readBuffer.subarray(0, n));
          } catch (err) {
            this.fail(err instanceof Error ? err : new H2Error(String(err)));
          }
          return true;
        },
      },
    });
    this.socket.on("error", (err) => this.fail(err));
    this.socket.on("close", () => this.fail(new H2Error("connection closed")));

    // Responses are small and short-lived: open both windows as far as they go once, so the
    // server never waits for us and a WINDOW_UPDATE is rare rather than one per response.
    const settings = Buffer.alloc(12);
    settings.writeUInt16BE(Setting.ENABLE_PUSH, 0);
    settings.writeUInt32BE(0, 2);
    settings.writeUInt16BE(Setting.INITIAL_WINDOW_SIZE, 6);
    settings.writeUInt32BE(MAX_WINDOW, 8);
    this.queue(PREFACE);
    this.queue(encodeFrame(FrameType.SETTINGS, 0, 0, settings));
    this.queue(windowUpdate(0, MAX_WINDOW - DEFAULT_WINDOW));
  }

  /**
   * Sends one request and settles when its stream ends. Resolves only for what looks like a
   * successful unary gRPC response: some DATA, then a trailers HEADERS frame with END_STREAM.
   * Response headers are never HPACK-decoded (the server uses Huffman and its dynamic
   * table), so grpc-status and :status are not read. A gRPC error is nearly always
   * trailers-only (one HEADERS frame, no DATA) and a non-gRPC answer (a non-200 :status)
   * ends on DATA or has no trailers: both are rejected here. What slips through (a message
   * followed by a non-OK status) the bench counts from the server's /metrics, as for h2load.
   */
  request(headerBlock: Buffer, body: Buffer): Promise<void> {
    // Later, not now: a closed loop whose calls all fail at once would otherwise spin in
    // microtasks and starve the timer that ends the run.
    const failed = this.failed;
    if (failed) return new Promise((_, reject) => setImmediate(() => reject(failed)));
    if (headerBlock.length > this.maxFrameSize) return Promise.reject(new H2Error("header block larger than a frame (no CONTINUATION)"));
    if (body.length > this.streamSendWindow) return Promise.reject(new H2Error("request body larger than the stream window"));
    return new Promise<void>((resolve, reject) => {
      const p: Pending = { headerBlock, body, stream: { resolve, reject, dataBytes: 0 } };
      if (this.streams.size >= this.maxConcurrent) this.waiting.push(p);
      else this.start(p);
    });
  }

  /** GOAWAY, then closes the socket once it is written; calls still open fail. */
  async close(): Promise<void> {
    if (this.socket.destroyed) return;
    // Last stream id 0 (we accept no server-initiated streams), NO_ERROR.
    this.queue(encodeFrame(FrameType.GOAWAY, 0, 0, Buffer.alloc(8)));
    this.flush();
    await new Promise<void>((resolve) => {
      this.socket.once("close", () => resolve());
      this.socket.end();
      // A server that keeps its half open must not keep the load process alive.
      setTimeout(() => this.socket.destroy(), 1000).unref();
    });
  }

  private start({ headerBlock, body, stream }: Pending): void {
    const id = this.nextStreamId;
    if (id > MAX_STREAM_ID) {
      stream.reject(new H2Error("stream ids exhausted"));
      return;
    }
    this.nextStreamId += 2;
    this.streams.set(id, stream);
    if (this.blockedData.length > 0 || body.length > this.connSendWindow || body.length > this.maxFrameSize) {
      this.queue(encodeFrame(FrameType.HEADERS, Flag.END_HEADERS, id, headerBlock));
      this.blockedData.push({ streamId: id, body });
      this.sendBlockedData();
      return;
    }
    // The usual case: HEADERS and the whole body in one DATA frame, built in one buffer.
    this.connSendWindow -= body.length;
    const buf = Buffer.allocUnsafe(2 * FRAME_HEADER + headerBlock.length + body.length);
    writeFrameHeader(buf, 0, headerBlock.length, FrameType.HEADERS, Flag.END_HEADERS, id);
    buf.set(headerBlock, FRAME_HEADER);
    const dataAt = FRAME_HEADER + headerBlock.length;
    writeFrameHeader(buf, dataAt, body.length, FrameType.DATA, Flag.END_STREAM, id);
    buf.set(body, dataAt + FRAME_HEADER);
    this.queue(buf);
  }

  /** Bodies in order, as the connection window allows, cut to the peer's MAX_FRAME_SIZE. */
  private sendBlockedData(): void {
    while (this.blockedData.length > 0) {
      const next = this.blockedData[0]!;
      if (!this.streams.has(next.streamId)) {
        this.blockedData.shift(); // reset by the server meanwhile
        continue;
      }
      const n = Math.min(next.body.length, this.maxFrameSize, this.connSendWindow);
      if (n === 0 && next.body.length > 0) return;
      const last = n === next.body.length;
      this.connSendWindow -= n;
      this.queue(encodeFrame(FrameType.DATA, last ? Flag.END_STREAM : 0, next.streamId, next.body.subarray(0, n)));
      if (last) this.blockedData.shift();
      else next.body = next.body.subarray(n);
    }
  }

  private queue(buf: Buffer): void {
    this.out.push(buf);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // A nextTick queued from a promise continuation runs once the whole microtask queue has
    // drained: every call that this socket read's responses start (each closed loop's next
    // call) has queued its frames by then, and they all go out in one write. setImmediate
    // would coalesce as well but costs an extra epoll_wait per event-loop turn.
    process.nextTick(() => this.flush());
  }

  private flush(): void {
    this.flushScheduled = false;
    const out = this.out;
    this.out = [];
    if (out.length === 0 || this.socket.destroyed) return;
    this.socket.write(out.length === 1 ? out[0]! : Buffer.concat(out));
  }

  private onFrame(f: Frame): void {
    switch (f.type) {
      case FrameType.DATA: {
        // Flow control counts the whole payload, padding included.
        this.unacked += f.payload.length;
        // Half the window used: give it back in one update rather than one per frame.
        if (this.unacked >= MAX_WINDOW / 2) {
          this.queue(windowUpdate(0, this.unacked));
          this.unacked = 0;
        }
        const s = this.streams.get(f.streamId);
        if (!s) return;
        s.dataBytes += f.payload.length;
        // Stream windows are never replenished: each starts at 2^31-1 and carries one response.
        if (f.flags & Flag.END_STREAM) this.end(f.streamId, new H2Error("response ended without trailers (not gRPC, or a non-200 status)"));
        return;
      }
      case FrameType.HEADERS:
      case FrameType.CONTINUATION: {
        // END_STREAM sits on HEADERS even when CONTINUATION frames follow; as the header block
        // is not decoded, the stream can be settled right away.
        if (f.type !== FrameType.HEADERS || !(f.flags & Flag.END_STREAM)) return;
        const s = this.streams.get(f.streamId);
        if (!s) return;
        this.end(f.streamId, s.dataBytes > 0 ? undefined : new H2Error("trailers-only response (a gRPC error; status not decoded)"));
        return;
      }
      case FrameType.RST_STREAM:
        if (this.streams.has(f.streamId)) this.end(f.streamId, new H2Error(`RST_STREAM ${errorName(f.payload.readUInt32BE(0))}`));
        return;
      case FrameType.SETTINGS:
        if (f.flags & Flag.ACK) return;
        this.applySettings(f.payload);
        this.queue(encodeFrame(FrameType.SETTINGS, Flag.ACK, 0));
        return;
      case FrameType.PING:
        if (!(f.flags & Flag.ACK)) this.queue(encodeFrame(FrameType.PING, Flag.ACK, 0, f.payload));
        return;
      case FrameType.WINDOW_UPDATE: {
        // Stream windows only matter for bodies bigger than the initial one, which request() refuses.
        if (f.streamId !== 0) return;
        this.connSendWindow += f.payload.readUInt32BE(0) & MAX_WINDOW;
        this.sendBlockedData();
        return;
      }
      case FrameType.GOAWAY: {
        const lastId = f.payload.readUInt32BE(0) & MAX_STREAM_ID;
        const err = new H2Error(`GOAWAY ${errorName(f.payload.readUInt32BE(4))}`);
        // No new streams from here on. Those above lastId were never processed; those below
        // may still be answered, and fail when the socket closes if not.
        this.failed ??= err;
        for (const p of this.waiting.splice(0)) p.stream.reject(err);
        for (const id of [...this.streams.keys()]) if (id > lastId) this.end(id, err);
        return;
      }
      default:
        return; // PRIORITY, PUSH_PROMISE (disabled), unknown types: ignored as RFC 9113 allows
    }
  }

  private applySettings(payload: Buffer): void {
    for (let off = 0; off + 6 <= payload.length; off += 6) {
      const id = payload.readUInt16BE(off);
      const value = payload.readUInt32BE(off + 2);
      if (id === Setting.MAX_FRAME_SIZE) this.maxFrameSize = value;
      else if (id === Setting.MAX_CONCURRENT_STREAMS) this.maxConcurrent = value;
      else if (id === Setting.INITIAL_WINDOW_SIZE) this.streamSendWindow = value;
      // HEADER_TABLE_SIZE: irrelevant, we never use the dynamic table.
    }
  }

  private end(id: number, err?: Error): void {
    const s = this.streams.get(id);
    if (!s) return;
    this.streams.delete(id);
    if (err) s.reject(err);
    else s.resolve();
    const next = this.waiting.shift();
    if (next) this.start(next);
  }

  private fail(err: Error): void {
    this.failed ??= err;
    const streams = [...this.streams.values()];
    this.streams.clear();
    for (const s of streams) s.reject(err);
    for (const p of this.waiting.splice(0)) p.stream.reject(err);
    this.socket.destroy();
  }
}

function windowUpdate(streamId: number, increment: number): Buffer {
  const payload = Buffer.allocUnsafe(4);
  payload.writeUInt32BE(increment, 0);
  return encodeFrame(FrameType.WINDOW_UPDATE, 0, streamId, payload);
}

const ERROR_NAMES = [
  "NO_ERROR",
  "PROTOCOL_ERROR",
  "INTERNAL_ERROR",
  "FLOW_CONTROL_ERROR",
  "SETTINGS_TIMEOUT",
  "STREAM_CLOSED",
  "FRAME_SIZE_ERROR",
  "REFUSED_STREAM",
  "CANCEL",
  "COMPRESSION_ERROR",
  "CONNECT_ERROR",
  "ENHANCE_YOUR_CALM",
  "INADEQUATE_SECURITY",
  "HTTP_1_1_REQUIRED",
];

function errorName(code: number): string {
  return ERROR_NAMES[code] ?? `error 0x${code.toString(16)}`;
}
