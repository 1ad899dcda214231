import type { ServerResponse, OutgoingHttpHeaders } from "node:http";
import type { Http2ServerResponse } from "node:http2";
import { clip, MAX_MESSAGE_CHARS } from "../errors.js";

/**
 * connect-node percent-encodes `grpc-message` with encodeURIComponent, while grpc-js reads
 * it with decodeURI, which leaves `%3A`, `%2C` and the other reserved escapes in place:
 * "amount_cents%3A must be…". The gRPC spec only asks for bytes outside 0x20–0x7E and `%`
 * to be escaped, which both decoders read back correctly, so re-encode to that.
 */
export function grpcMessageReadableByGrpcJs(res: ServerResponse | Http2ServerResponse): void {
  const r = res as ServerResponse;
  const writeHead = r.writeHead.bind(r) as (status: number, headers?: OutgoingHttpHeaders) => ServerResponse;
  r.writeHead = ((status: number, headers?: OutgoingHttpHeaders) => writeHead(status, rewrite(headers))) as typeof r.writeHead;
  const addTrailers = r.addTrailers.bind(r);
  r.addTrailers = (headers) => addTrailers(rewrite(headers as OutgoingHttpHeaders) as typeof headers);
}

function rewrite<T extends OutgoingHttpHeaders | undefined>(headers: T): T {
  const value = headers?.["grpc-message"];
  if (typeof value !== "string") return headers;
  return { ...headers, "grpc-message": readableGrpcMessage(value) };
}

/**
 * A grpc-message as connect encodes it, re-encoded so that grpc-js reads it back intact, and
 * clipped: connect's own errors can quote the request (an unknown JSON key of any length),
 * and trailers larger than an HTTP/2 frame cost the whole connection.
 */
export function readableGrpcMessage(value: string): string {
  let decoded = value;
  try {
    decoded = decodeURIComponent(value);
  } catch {
    // Not percent-encoded after all: encode it as it is.
  }
  return minimalPercentEncoding(clip(decoded, MAX_MESSAGE_CHARS));
}

export function minimalPercentEncoding(message: string): string {
  let out = "";
  for (const byte of Buffer.from(message, "utf8")) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}
