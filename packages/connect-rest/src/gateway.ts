// The REST gateway: match a google.api.http route, transcode the request, run the method's
// implementation through the app's interceptors (the same invoker and interceptors as the
// other protocols), and render the response or error as REST JSON.
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { DescMethod, DescMethodUnary, DescService, JsonValue } from "@bufbuild/protobuf";
import type { ContextValues } from "@connectrpc/connect";
import { Code, ConnectError, createContextKey, createContextValues } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import * as jsonc from "jsonc-parser";
import { toRestJson, type RestJsonOptions } from "./json.js";
import { buildRequest } from "./request.js";
import { buildRoutes, matchRoute, splitPath, type RestRoute } from "./routes.js";
import type { UnaryInvoker } from "./unary.js";

export type NodeRequest = IncomingMessage | Http2ServerRequest;
export type NodeResponse = ServerResponse | Http2ServerResponse;

export interface RestResponse {
  /** HTTP status; formatSuccess defaults to 200, formatError to the status in its context. */
  status?: number;
  body: JsonValue;
  headers?: Record<string, string>;
}

export interface RestSuccessContext {
  readonly method: DescMethod;
  readonly httpMethod: string;
  readonly route: RestRoute;
}

export interface RestErrorContext {
  /** Undefined when no method was reached (405, or a failure before the route was known). */
  readonly method: DescMethod | undefined;
  readonly httpMethod: string;
  /** The HTTP status the gateway would use: from the Connect code, or 405/413/415 for its own refusals. */
  readonly status: number;
}

export interface RestGatewayOptions {
  /** Services whose methods carry google.api.http rules. Methods without a rule are not exposed. */
  services: readonly DescService[];
  /** Runs the methods (createUnaryInvoker, with the app's interceptors). */
  invoker: UnaryInvoker;
  /** Prefix of every route, e.g. "/bridge-payment/account-balance". Default "" (routes at the root). */
  basePath?: string;
  /**
   * Nothing but this gateway lives below `basePath`: a path there that no route matches is
   * answered 404 in the error envelope (`formatError`) instead of going to `next`, whose 404
   * would know nothing of it. Default false.
   */
  ownsBasePath?: boolean;
  /** Largest request body read; past it the answer is 413 and the rest is not read. Default 1 MiB. */
  maxBodyBytes?: number;
  /**
   * Deadline of every call, in ms: the handler context's signal aborts with DEADLINE_EXCEEDED
   * then (answered then by an interceptor that races the signal, or by an implementation
   * that heeds it). Default: none.
   */
  timeoutMs?: number;
  /** Shapes a success. Default: status 200, body = the REST JSON of the response message. */
  formatSuccess?: (json: JsonValue, ctx: RestSuccessContext) => RestResponse;
  /** Shapes a failure. Default: {error: message, code: "invalid_argument"...} with ctx.status. */
  formatError?: (err: ConnectError, ctx: RestErrorContext) => RestResponse;
  /** Context values for the call (like connect-node's option); restCallKey is set on them. */
  contextValues?: (req: NodeRequest) => ContextValues;
  /** Called with unexpected exceptions (they are answered as a bare 500 "internal error"). */
  onError?: (err: unknown) => void;
  /** Options of the JSON rendering, e.g. a registry for google.protobuf.Any. */
  json?: RestJsonOptions;
  /**
   * Query fields (paths, e.g. "to") that are inclusive upper bounds of a time: a bare date there
   * means the last instant of that day, so "from=D&to=D" is the whole day. Elsewhere, and by
   * default, a bare date is midnight UTC.
   */
  dateEndsDay?: readonly string[];
}

/** Handles the request if it matches a route and returns true; otherwise calls next (if given) and returns false. */
export type RestGateway = ((req: NodeRequest, res: NodeResponse, next?: () => void) => Promise<boolean>) & {
  readonly routes: readonly RestRoute[];
  readonly basePath: string;
};

/** What an interceptor can learn about a call that came through the gateway: `ctx.contextValues.get(restCallKey)`. */
export interface RestCallInfo {
  readonly route: RestRoute;
  readonly httpMethod: string;
}

export const restCallKey = createContextKey<RestCallInfo | undefined>(undefined, { description: "connect-rest call" });

const defaultMaxBodyBytes = 1024 * 1024;

/** HTTP status of a Connect code, as the REST API documents it. */
export function httpStatusFromCode(code: Code): number {
  switch (code) {
    case Code.InvalidArgument:
    case Code.FailedPrecondition:
    case Code.OutOfRange:
      return 400;
    case Code.Unauthenticated:
      return 401;
    case Code.PermissionDenied:
      return 403;
    case Code.NotFound:
    case Code.Unimplemented:
      return 404;
    case Code.AlreadyExists:
    case Code.Aborted:
      return 409;
    case Code.ResourceExhausted:
      return 429;
    case Code.Canceled:
      return 499;
    case Code.Unavailable:
      return 503;
    case Code.DeadlineExceeded:
      return 504;
    default:
      return 500; // Internal, Unknown, DataLoss
  }
}

export function defaultFormatError(err: ConnectError, ctx: RestErrorContext): RestResponse {
  return { status: ctx.status, body: { error: err.rawMessage, code: codeToString(err.code) } };
}

export function createRestGateway(opts: RestGatewayOptions): RestGateway {
  const basePath = normalizeBasePath(opts.basePath ?? "");
  const maxBodyBytes = opts.maxBodyBytes ?? defaultMaxBodyBytes;
  const dateEndsDay = new Set(opts.dateEndsDay ?? []);
  const formatSuccess = opts.formatSuccess ?? ((json: JsonValue): RestResponse => ({ status: 200, body: json }));
  const formatError = opts.formatError ?? defaultFormatError;
  const routes = buildRoutes(opts.services);
  for (const r of routes) {
    if (opts.invoker.lookup(requestPath(r.method)) !== r.method) throw new Error(`no unary implementation of ${requestPath(r.method)}`);
  }

  const sendError = (res: NodeResponse, err: ConnectError, ctx: RestErrorContext, extra: Record<string, string> = {}) => {
    const out = formatError(err, ctx);
    send(res, out.status ?? ctx.status, out.body, { ...extra, ...out.headers });
  };

  const gateway = async (req: NodeRequest, res: NodeResponse, next?: () => void): Promise<boolean> => {
    const httpMethod = (req.method ?? "GET").toUpperCase();
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    const pathname = q < 0 ? url : url.slice(0, q);
    const search = q < 0 ? "" : url.slice(q);
    const relative = stripBasePath(pathname, basePath);
    const segments = relative === undefined ? undefined : splitPath(relative);
    const match = segments === undefined ? undefined : matchRoute(routes, httpMethod, segments);
    if (match === undefined || match.kind === "not-found") {
      if (opts.ownsBasePath && relative !== undefined && basePath !== "") {
        sendError(res, new ConnectError("no such route", Code.NotFound), { method: undefined, httpMethod, status: 404 });
        return true;
      }
      next?.();
      return false;
    }
    if (match.kind === "method-not-allowed") {
      const err = new ConnectError(`${httpMethod} is not allowed here`, Code.Unimplemented);
      sendError(res, err, { method: undefined, httpMethod, status: 405 }, { allow: match.allowed.join(", ") });
      return true;
    }
    const { route, values } = match;
    const errCtx = (status: number): RestErrorContext => ({ method: route.method, httpMethod, status });
    try {
      let body: JsonValue | undefined;
      if (route.body !== "") {
        const refusal = contentRefusal(req.headers);
        if (refusal) {
          sendError(res, new ConnectError(refusal, Code.InvalidArgument), errCtx(415));
          return true;
        }
        const bytes = await readBody(req, maxBodyBytes);
        if (bytes === undefined) {
          const extra: Record<string, string> = req.httpVersionMajor === 1 ? { connection: "close" } : {};
          const err = new ConnectError(`request body larger than ${maxBodyBytes} bytes`, Code.ResourceExhausted);
          sendError(res, err, errCtx(413), extra);
          return true;
        }
        if (bytes.length > 0) {
          let text: string;
          try {
            text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
            body = JSON.parse(text) as JsonValue;
          } catch {
            sendError(res, new ConnectError("malformed JSON body", Code.InvalidArgument), errCtx(400));
            return true;
          }
          const hidden = jsonHiddenProblem(text);
          if (hidden !== undefined) {
            sendError(res, new ConnectError(hidden, Code.InvalidArgument), errCtx(400));
            return true;
          }
        }
      }
      const message = buildRequest(route, { values, query: new URLSearchParams(search), body, dateEndsDay });

      const abort = new AbortController();
      const onClose = () => {
        if (!res.writableEnded) abort.abort(new ConnectError("client closed the connection", Code.Canceled));
      };
      res.once("close", onClose);
      const contextValues = opts.contextValues?.(req) ?? createContextValues();
      contextValues.set(restCallKey, { route, httpMethod });
      const outcome = await opts.invoker.invoke({
        // Checked when the gateway was built: every route's method is unary and implemented.
        method: route.method as DescMethodUnary,
        message,
        header: forwardedHeaders(req.headers),
        url: `${origin(req)}${requestPath(route.method)}${search}`,
        requestMethod: httpMethod,
        protocolName: "rest",
        contextValues,
        ...(opts.timeoutMs === undefined ? {} : { timeoutMs: opts.timeoutMs }),
        abort,
      });
      const resHeaders = responseHeaders(outcome.header, outcome.trailer, outcome.error);
      if (outcome.error === undefined) {
        let json = toRestJson(route.method.output, outcome.message, opts.json);
        if (route.responseBodyField !== undefined && typeof json === "object" && json !== null && !Array.isArray(json)) {
          json = json[route.responseBodyField.name] ?? null;
        }
        const formatted = formatSuccess(json, { method: route.method, httpMethod, route });
        send(res, formatted.status ?? 200, formatted.body, { ...resHeaders, ...formatted.headers });
      } else {
        const err = outcome.error;
        const out = formatError(err, errCtx(httpStatusFromCode(err.code)));
        send(res, out.status ?? httpStatusFromCode(err.code), out.body, { ...resHeaders, ...out.headers });
      }
    } catch (e) {
      if (e instanceof ConnectError) {
        sendError(res, e, errCtx(httpStatusFromCode(e.code)));
      } else {
        opts.onError?.(e);
        sendError(res, new ConnectError("internal error", Code.Internal), errCtx(500));
      }
    }
    return true;
  };
  return Object.assign(gateway, { routes, basePath });
}

function requestPath(method: DescMethod): string {
  return `/${method.parent.typeName}/${method.name}`;
}

function normalizeBasePath(p: string): string {
  const trimmed = p.replace(/\/+$/, "");
  return trimmed === "" ? "" : trimmed.startsWith("/") ? trimmed : `/${trimmed}`;
}

function stripBasePath(pathname: string, basePath: string): string | undefined {
  if (basePath === "") return pathname;
  if (pathname === basePath) return "/";
  return pathname.startsWith(`${basePath}/`) ? pathname.slice(basePath.length) : undefined;
}

/**
 * Why a route that takes a body refuses this request, or undefined. Only JSON, declared, even
 * for an empty body: a browser sends a cross-site POST without a preflight only with no
 * content type or a form's, so a form post or a body-less one carrying a session cookie can
 * never change anything.
 */
function contentRefusal(headers: IncomingHttpHeaders): string | undefined {
  const enc = headers["content-encoding"];
  if (enc !== undefined && enc.toLowerCase() !== "identity") return "compressed request bodies are not supported";
  const ct = headers["content-type"];
  if (ct === undefined) return "Content-Type: application/json is required";
  const [mime, ...params] = ct.split(";").map((s) => s.trim().toLowerCase());
  if (mime !== "application/json") return "request body must be application/json";
  for (const p of params) {
    const [k, v] = p.split("=").map((s) => s.trim().replace(/^"|"$/g, ""));
    if (k === "charset" && v !== "utf-8" && v !== "utf8") return "request body must be UTF-8";
  }
  return undefined;
}

// jsonc-parser's SyntaxKind is a const enum in its types and a plain object at run time.
type TokenName = "OpenBraceToken" | "CloseBraceToken" | "OpenBracketToken" | "CloseBracketToken" | "CommaToken" | "StringLiteral" | "NumericLiteral" | "EOF";
const Token = (jsonc as unknown as { SyntaxKind: Record<TokenName, number> }).SyntaxKind;

/**
 * What JSON.parse would hide in a body (already valid JSON): a key twice in one object (it
 * keeps the last: {"amount_cents":1,"amount_cents":2} would move 2 where a proxy or a log
 * that read the first saw 1), or a number with a fraction that the nearest double makes
 * whole (4.9999999999999999 is 5 to JSON.parse, and would pass as an integer amount). Fields
 * with a fraction of their own still take any other fraction.
 */
function hiddenByParse(text: string): { key: string } | { number: string } | undefined {
  // jsonc-parser's tokenizer with a stack of our own: its tree visitor recurses, and a body
  // nested 50,000 deep would overflow the call stack (JSON.parse does not).
  const scanner = jsonc.createScanner(text, true);
  const open: Array<Set<string> | undefined> = []; // one per object or array (undefined)
  let keyNext = false;
  for (let token = scanner.scan(); token !== Token.EOF; token = scanner.scan()) {
    switch (token) {
      case Token.OpenBraceToken:
        open.push(new Set());
        keyNext = true;
        break;
      case Token.OpenBracketToken:
        open.push(undefined);
        keyNext = false;
        break;
      case Token.CloseBraceToken:
      case Token.CloseBracketToken:
        open.pop();
        keyNext = false;
        break;
      case Token.CommaToken:
        keyNext = open[open.length - 1] !== undefined;
        break;
      case Token.NumericLiteral: {
        const literal = scanner.getTokenValue();
        if (roundsToWhole(literal)) return { number: literal };
        break;
      }
      case Token.StringLiteral:
        if (keyNext) {
          const keys = open[open.length - 1]!;
          const name = scanner.getTokenValue();
          if (keys.has(name)) return { key: name };
          keys.add(name);
          keyNext = false;
        }
        break;
      default:
        break;
    }
  }
  return undefined;
}

/** What `hiddenByParse` finds in a JSON text, as a message for the caller; undefined if nothing. */
export function jsonHiddenProblem(text: string): string | undefined {
  const hidden = hiddenByParse(text);
  if (hidden === undefined) return undefined;
  return "key" in hidden
    ? `JSON key ${JSON.stringify(hidden.key.slice(0, 100))} appears twice in one object`
    : `JSON number ${hidden.number.slice(0, 40)} has a fraction that rounds to a whole number`;
}

/** Whether a JSON number literal is not a whole number, but its nearest double is. */
function roundsToWhole(literal: string): boolean {
  // Most numbers are plain integers: nothing to round.
  if (!/[.eE]/.test(literal)) return false;
  const m = /^-?(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(literal);
  if (!m || !Number.isInteger(Number(literal))) return false;
  const [, whole, fraction = "", exp = "0"] = m;
  const e = Number(exp);
  // The digits that stay after the decimal point once the exponent has moved it.
  const after = e >= 0 ? fraction.slice(e) : whole!.slice(Math.max(0, whole!.length + e)) + fraction;
  return /[1-9]/.test(after);
}

/** The body, or undefined when it is larger than max (then reading stops). */
function readBody(req: NodeRequest, max: number): Promise<Uint8Array | undefined> {
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > max) return Promise.resolve(undefined);
  if (req.readableEnded) return Promise.resolve(new Uint8Array(0));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = () => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onError);
      req.off("close", onClosed);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > max) {
        cleanup();
        req.pause();
        resolve(undefined);
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      resolve(Buffer.concat(chunks));
    };
    const onError = (e: Error) => {
      cleanup();
      reject(e);
    };
    const onClosed = () => {
      cleanup();
      reject(new ConnectError("client closed the connection", Code.Canceled));
    };
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onError);
    req.on("close", onClosed);
  });
}

const hopByHop = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authorization",
  "transfer-encoding",
  "upgrade",
  "te",
  "trailer",
  "http2-settings",
  "content-length",
  "content-type",
  "content-encoding",
  "accept-encoding",
]);

/** The caller's headers for the Connect call: all end-to-end ones (auth, cookies, idempotency keys...). */
function forwardedHeaders(incoming: IncomingHttpHeaders): Headers {
  const out = new Headers();
  const named = new Set(
    String(incoming.connection ?? "")
      .split(",")
      .map((s) => s.trim().toLowerCase()),
  );
  for (const [name, value] of Object.entries(incoming)) {
    if (value === undefined || name.startsWith(":") || hopByHop.has(name) || named.has(name)) continue;
    // Protocol headers belong to the gateway's own Connect call (no compression, no client timeouts).
    if (name.startsWith("connect-") || name.startsWith("grpc-")) continue;
    if (Array.isArray(value)) for (const v of value) out.append(name, v);
    else out.set(name, value);
  }
  return out;
}

function origin(req: NodeRequest): string {
  const h = req.headers;
  const authority = (h[":authority"] as string | undefined) ?? h.host ?? "localhost";
  const scheme = (h[":scheme"] as string | undefined) ?? ("encrypted" in req.socket && req.socket.encrypted ? "https" : "http");
  return `${scheme}://${authority}`;
}

const notForwardedBack = /^(content-type|content-length|content-encoding|transfer-encoding|connection|keep-alive|vary|connect-.*|grpc-.*)$/;

/**
 * Response headers and trailers the handler set, and an error's own metadata (e.g.
 * retry-after, set-cookie), as plain headers.
 */
function responseHeaders(header: Headers, trailer: Headers, error: ConnectError | undefined): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const h of [header, trailer, error?.metadata]) {
    if (h === undefined) continue;
    h.forEach((value, key) => {
      const name = key.startsWith("trailer-") ? key.slice("trailer-".length) : key;
      if (notForwardedBack.test(name)) return;
      out[name] = name === "set-cookie" ? h.getSetCookie() : value;
    });
  }
  return out;
}

function send(res: NodeResponse, status: number, body: JsonValue, headers: Record<string, string | string[]>): void {
  if (res.headersSent || res.writableEnded) return;
  const data = JSON.stringify(body);
  const r = res as ServerResponse;
  r.statusCode = status;
  for (const [k, v] of Object.entries(headers)) {
    if (k === "connection" && (res as Http2ServerResponse).stream !== undefined) continue;
    r.setHeader(k, v);
  }
  r.setHeader("content-type", "application/json; charset=utf-8");
  r.setHeader("content-length", Buffer.byteLength(data));
  r.end(data);
}
