import type { OutgoingHttpHeaders, ServerResponse } from "node:http";
import type { Http2ServerResponse } from "node:http2";
import { fromBinary, fromJsonString, toBinary, toJsonString, type DescMessage, type DescMethodUnary } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextValues } from "@connectrpc/connect";
import { mergeNonProtocolHeaders, type UniversalHandler } from "@connectrpc/connect/protocol";
import { parseTimeout as parseGrpcTimeout, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import {
  codeToHttpStatus,
  errorToJsonBytes,
  parseTimeout as parseConnectTimeout,
  trailerMux,
} from "@connectrpc/connect/protocol-connect";
import { universalResponseToNodeResponse } from "@connectrpc/connect-node";
import type { UnaryInvoker } from "@account-balance/connect-rest";
import { readableGrpcMessage } from "./grpc-message.js";
import { strictJsonDecoder } from "./strict-json.js";
import type { NodeRequest, NodeResponse } from "./listen.js";

/**
 * A shorter way through connect for the two plain unary calls:
 * - gRPC: HTTP/2, `application/grpc` (or `+proto`), no request compression, one
 *   uncompressed message;
 * - Connect: POST, `application/json` (UTF-8) or `application/proto`, no request
 *   compression.
 * connect-node runs every call, unary or not, through its streaming machinery (async
 * generators, linked abort signals, a DOMException per finished call); on this 2-vCPU
 * machine that alone costs about 1 ms of CPU per call, more than the ledger's whole share
 * (docs/benchmarks.md).
 *
 * The call itself runs as on every other protocol: the shared UnaryInvoker (connect's
 * handler context and invocation, the app's interceptors), with connect's own timeout
 * parsers, trailer status, error JSON and status mapping. A request this path does not
 * take on, or a body it cannot decode, goes to connect's handler for the method with the
 * bytes already read, so a malformed or unusual request gets connect's answer, unchanged.
 *
 * One difference: responses are never compressed here (connect would compress a large one
 * for a client that accepts it); compression is optional for a server in both protocols.
 */
export interface UnaryShortPathOptions {
  invoker: UnaryInvoker;
  /** connect's router handlers, to hand over what this path does not take on. */
  handlers: readonly UniversalHandler[];
  readMaxBytes: number;
  writeMaxBytes: number;
  maxTimeoutMs: number;
  /** Connect JSON request bodies: unknown fields refused (as connect's jsonOptions). */
  ignoreUnknownFields: boolean;
}

interface Route {
  method: DescMethodUnary;
  fallback: UniversalHandler;
}

type Wire = { protocol: "grpc" } | { protocol: "connect"; json: boolean };

const GRPC_CONTENT_TYPES = new Set(["application/grpc", "application/grpc+proto"]);
const CONNECT_JSON = /^application\/json(?:; ?charset=utf-?8)?$/i;
const HEADER_BYTES = 5;

/** Returns a handler that answers a request it takes on (true), or leaves it alone (false). */
export function createUnaryShortPath(opts: UnaryShortPathOptions): (req: NodeRequest, res: NodeResponse) => boolean {
  const routes = new Map<string, Route>();
  for (const fallback of opts.handlers) {
    const method = opts.invoker.lookup(fallback.requestPath);
    if (method) routes.set(fallback.requestPath, { method, fallback });
  }

  return (req, res) => {
    if (req.method !== "POST") return false;
    const route = routes.get(req.url ?? "");
    if (!route) return false;
    const h = req.headers;
    const contentType = h["content-type"] ?? "";
    if (GRPC_CONTENT_TYPES.has(contentType)) {
      if (req.httpVersionMajor !== 2) return false;
      const encoding = h["grpc-encoding"];
      if (encoding !== undefined && encoding !== "identity") return false;
      const timeout = parseGrpcTimeout(singleHeader(h["grpc-timeout"]), opts.maxTimeoutMs);
      if (timeout.error) return false;
      serve(route, { protocol: "grpc" }, req, res, timeout.timeoutMs, opts).catch(() => abandon(res));
      return true;
    }
    const json = CONNECT_JSON.test(contentType);
    if (!json && contentType !== "application/proto") return false;
    const encoding = h["content-encoding"];
    if (encoding !== undefined && encoding !== "identity") return false;
    // Only bodies whose size is known and allowed. A larger one connect refuses from the
    // header alone; and on HTTP/1.1 a body this path had started to read but not finished
    // would be left on the keep-alive connection, in front of the next request.
    const length = h["content-length"];
    if (length === undefined ? req.httpVersionMajor !== 2 : !(Number(length) <= opts.readMaxBytes)) return false;
    const timeout = parseConnectTimeout(singleHeader(h["connect-timeout-ms"]), opts.maxTimeoutMs);
    if (timeout.error) return false;
    serve(route, { protocol: "connect", json }, req, res, timeout.timeoutMs, opts).catch(() => abandon(res));
    return true;
  };
}

/** A call this path failed to answer: its stream is reset, never left open or the process ended. */
function abandon(res: NodeResponse): void {
  if (!res.destroyed) res.destroy();
}

async function serve(
  route: Route,
  wire: Wire,
  req: NodeRequest,
  res: NodeResponse,
  timeoutMs: number | undefined,
  opts: UnaryShortPathOptions,
): Promise<void> {
  const header = webHeaders(req);
  const authority = "authority" in req ? req.authority : req.headers.host;
  const url = `http://${authority ?? "localhost"}${req.url ?? ""}`;
  const contextValues = createContextValues();
  const grpc = wire.protocol === "grpc";
  const body = await readBody(req, grpc ? opts.readMaxBytes + HEADER_BYTES : opts.readMaxBytes, grpc);
  if (body === "closed") return;
  if (body.kind === "overflow") {
    await handOver(route, req, res, header, url, contextValues, overflowBody(body.chunks, req));
    return;
  }
  const bytes = body.bytes;
  const message = wire.protocol === "grpc" ? decodeSingle(route.method.input, bytes) : decodeConnect(route.method.input, bytes, wire.json, opts);
  if (message === undefined) {
    await handOver(route, req, res, header, url, contextValues, once(bytes));
    return;
  }

  const abort = new AbortController();
  let finished = false;
  res.once("close", () => {
    if (!finished) abort.abort(new ConnectError("the client cancelled the call", Code.Canceled));
  });
  const contentType = grpc ? "application/grpc+proto" : wire.json ? "application/json" : "application/proto";
  const outcome = await opts.invoker.invoke({
    method: route.method,
    message,
    header,
    url,
    requestMethod: "POST",
    protocolName: wire.protocol,
    contextValues,
    timeoutMs,
    abort,
    responseHeader: { "content-type": contentType },
    ...(grpc ? { responseTrailer: { "grpc-status": "0" } } : {}),
  });
  finished = true;
  let error = outcome.error;
  let out: Uint8Array | undefined;
  if (outcome.error === undefined) {
    const encoded = encode(route.method.output, outcome.message, wire);
    if (encoded === undefined) error = new ConnectError("internal error", Code.Internal);
    else if (encoded.length <= opts.writeMaxBytes) out = encoded;
    else error = new ConnectError(`message size ${encoded.length} is larger than configured writeMaxBytes ${opts.writeMaxBytes}`, Code.ResourceExhausted);
  }
  if (res.destroyed || res.headersSent || res.writableEnded) return;
  if (grpc) {
    if (error !== undefined) setTrailerStatus(outcome.trailer, error);
    const r = res as Http2ServerResponse;
    r.writeHead(200, nodeHeaders(outcome.header));
    r.addTrailers(nodeHeaders(outcome.trailer));
    if (out) r.end(envelope(out));
    else r.end();
    return;
  }
  // Connect unary: trailers travel as "trailer-" headers; an error is a JSON body with the
  // HTTP status of its code, the error's own metadata as headers (as connect does).
  let status = 200;
  if (error !== undefined) {
    status = codeToHttpStatus(error.code);
    outcome.header.set("content-type", "application/json");
    if (!error.isWireError) mergeNonProtocolHeaders(outcome.header, error.metadata);
    out = errorToJsonBytes(error, {});
  }
  const headers = nodeHeaders(trailerMux(outcome.header, outcome.trailer));
  headers["content-length"] = String(out!.length);
  (res as ServerResponse).writeHead(status, headers);
  res.end(out!);
}

/**
 * The response message on the wire, or undefined if it cannot be encoded (a value outside
 * its field's range): the caller is answered INTERNAL, without the encoder's text, which
 * names the message's fields.
 */
function encode(schema: DescMessage, message: Parameters<typeof toBinary>[1], wire: Wire): Uint8Array | undefined {
  try {
    return wire.protocol === "connect" && wire.json ? Buffer.from(toJsonString(schema, message), "utf8") : toBinary(schema, message);
  } catch {
    return undefined;
  }
}

/** connect's own handler for the method, given the request body as read so far. */
async function handOver(
  route: Route,
  req: NodeRequest,
  res: NodeResponse,
  header: Headers,
  url: string,
  contextValues: ReturnType<typeof createContextValues>,
  body: AsyncIterable<Uint8Array>,
): Promise<void> {
  const abort = new AbortController();
  res.once("close", () => abort.abort(new ConnectError("the client cancelled the call", Code.Canceled)));
  try {
    const uRes = await route.fallback({ httpVersion: req.httpVersion, method: "POST", url, header, body, signal: abort.signal, contextValues });
    if (uRes.trailer?.has("grpc-message")) {
      uRes.trailer.set("grpc-message", readableGrpcMessage(uRes.trailer.get("grpc-message")!));
    }
    await universalResponseToNodeResponse(uRes, res as ServerResponse);
  } catch {
    // The client went away while the answer was written: nothing is left to tell it.
    if (!res.closed) res.destroy();
  }
}

type Body = { kind: "whole"; bytes: Uint8Array } | { kind: "overflow"; chunks: Buffer[] };

/** The whole body, or what was read of it when it grew past max ("overflow", reading paused). */
function readBody(req: NodeRequest, max: number, grpcPrefix: boolean): Promise<Body | "closed"> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (result: Body | "closed") => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("close", onClose);
      resolve(result);
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
      // A message announced larger than allowed goes to connect at once, as connect itself
      // refuses it from the 5-byte prefix without waiting for the rest.
      if (size > max || (grpcPrefix && size >= HEADER_BYTES && declaredLength(chunks) > max - HEADER_BYTES)) {
        req.pause();
        done({ kind: "overflow", chunks });
      }
    };
    const onEnd = () => done({ kind: "whole", bytes: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size) });
    // The stream closed before its body ended (reset, or answered as stalled by listen.ts).
    const onClose = () => done("closed");
    req.on("data", onData);
    req.once("end", onEnd);
    req.once("close", onClose);
  });
}

/** The length in the first message's 5-byte prefix (the chunks hold at least 5 bytes). */
function declaredLength(chunks: Buffer[]): number {
  const head = chunks[0]!.length >= HEADER_BYTES ? chunks[0]! : Buffer.concat(chunks);
  return head.readUInt32BE(1);
}

/** The message of a body that is exactly one uncompressed gRPC message, else undefined. */
function decodeSingle(schema: DescMessage, bytes: Uint8Array): ReturnType<typeof fromBinary> | undefined {
  if (bytes.length < HEADER_BYTES || bytes[0] !== 0) return undefined;
  const length = ((bytes[1]! << 24) | (bytes[2]! << 16) | (bytes[3]! << 8) | bytes[4]!) >>> 0;
  if (length !== bytes.length - HEADER_BYTES) return undefined;
  try {
    return fromBinary(schema, bytes.subarray(HEADER_BYTES));
  } catch {
    return undefined;
  }
}

/** A Connect unary request body as its message, else undefined (connect then answers it). */
function decodeConnect(schema: DescMessage, bytes: Uint8Array, json: boolean, opts: UnaryShortPathOptions): ReturnType<typeof fromBinary> | undefined {
  try {
    if (!json) return fromBinary(schema, bytes);
    return fromJsonString(schema, strictJsonDecoder.decode(bytes), { ignoreUnknownFields: opts.ignoreUnknownFields });
  } catch {
    return undefined;
  }
}

function envelope(message: Uint8Array): Uint8Array {
  const out = Buffer.allocUnsafe(HEADER_BYTES + message.length);
  out[0] = 0;
  out.writeUInt32BE(message.length, 1);
  out.set(message, HEADER_BYTES);
  return out;
}

async function* once(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  yield bytes;
}

async function* overflowBody(read: Buffer[], req: NodeRequest): AsyncIterable<Uint8Array> {
  yield* read;
  for await (const chunk of req) yield chunk as Buffer;
}

/** The request headers as connect sees them: HTTP/2 pseudo-headers dropped. */
function webHeaders(req: NodeRequest): Headers {
  const out = new Headers();
  for (const [k, v] of Object.entries(req.headers)) {
    if (k.startsWith(":") || v === undefined) continue;
    if (Array.isArray(v)) for (const e of v) out.append(k, e);
    else out.append(k, String(v));
  }
  return out;
}

function nodeHeaders(headers: Headers): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  headers.forEach((value, key) => {
    out[key] = key === "grpc-message" ? readableGrpcMessage(value) : value;
  });
  // set-cookie is the one header Headers joins; keep each cookie its own field.
  const cookies = headers.getSetCookie();
  if (cookies.length > 0) out["set-cookie"] = cookies;
  return out;
}

function singleHeader(v: string | string[] | undefined): string | null {
  return v === undefined ? null : Array.isArray(v) ? v.join(",") : v;
}
