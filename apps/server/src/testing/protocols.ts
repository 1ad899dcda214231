import { fileURLToPath } from "node:url";
import {
  fromBinary,
  fromJson,
  toJson,
  type DescEnum,
  type DescField,
  type DescMessage,
  type DescMethod,
  type DescService,
  type JsonObject,
  type JsonValue,
  type Message,
} from "@bufbuild/protobuf";
import { AnySchema } from "@bufbuild/protobuf/wkt";
import { BinaryReader } from "@bufbuild/protobuf/wire";
import { Code, ConnectError, createClient, type CallOptions, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { AccountBalanceService } from "@account-balance/proto/accountbalance/v1/account_balance_service_pb.js";
import { AccountBalanceAdminService } from "@account-balance/proto/accountbalance/v1/account_balance_admin_service_pb.js";
import { ErrorInfoSchema, type ErrorInfo } from "@account-balance/proto/google/rpc/error_details_pb.js";

/**
 * One way to call any RPC of the contract over each protocol the server speaks, with the
 * answers brought to one shape so that a test can assert the same facts on all of them:
 *
 * - "rest": fetch against the google.api.http route (the REST gateway);
 * - "connect-json" / "connect-binary": a Connect client over HTTP/1.1 (generated descriptors);
 * - "grpc": @grpc/grpc-js with @grpc/proto-loader reading the .proto files (no generated code).
 *
 * Requests are written once, as REST would send them: snake_case field names, enums as the
 * lowercase word ("credits"), int64 as JSON numbers, timestamps as ISO strings, metadata as
 * plain objects. Successful answers are brought to the REST JSON shape (snake_case, numbers,
 * lowercase enums, null for absent values), so `data` compares equal across protocols.
 */

export type Protocol = "rest" | "connect-json" | "connect-binary" | "grpc";
export const PROTOCOLS: readonly Protocol[] = ["rest", "connect-json", "connect-binary", "grpc"];

export const REPO_ROOT = fileURLToPath(new URL("../../../../", import.meta.url));
export const PROTO_DIR = `${REPO_ROOT}proto`;
export const THIRD_PARTY_PROTO_DIR = `${REPO_ROOT}packages/proto/third_party`;
export const DEFAULT_REST_BASE = "/bridge-payment/account-balance";

/** Credentials of one call. */
export interface Auth {
  /** Sent as X-Session-ID (metadata x-session-id on gRPC). */
  session?: string;
  /** Sent as Authorization: Bearer … */
  bearer?: string;
  /** Any other headers / metadata (e.g. x-user-id). */
  headers?: Record<string, string>;
}

export interface Success {
  ok: true;
  protocol: Protocol;
  /** REST HTTP status; 200 on the other protocols. */
  status: number;
  /** The `data` of the answer in REST JSON shape. */
  data: any;
  /** The `meta` of list answers, REST shape ({page, limit, total, hasMore}). */
  meta: any;
  /** REST only: the whole parsed body. */
  body?: any;
}

export interface Failure {
  ok: false;
  protocol: Protocol;
  /** REST: the HTTP status. Others: undefined. */
  status: number | undefined;
  /** Connect / gRPC status code. REST: undefined. */
  code: Code | undefined;
  /** REST: body.code; Connect / gRPC: google.rpc.ErrorInfo reason (undefined if there was none). */
  reason: string | undefined;
  /** Human message (REST body.error, ConnectError.rawMessage, grpc-js err.details). */
  message: string;
  /** REST only: the whole parsed body (undefined if it was not JSON). */
  body?: any;
  /** Connect / gRPC: the ErrorInfo details. */
  errorInfo?: ErrorInfo[];
}

export type Outcome = Success | Failure;

export interface CallOpts {
  /** Connect / gRPC deadline. */
  timeoutMs?: number;
  /** REST: extra headers such as Idempotency-Key. */
  headers?: Record<string, string>;
}

const SERVICES: Record<string, DescService> = {
  AccountBalanceService,
  AccountBalanceAdminService,
};

/** The descriptor of an RPC by its name, e.g. "CreateBalance". */
export function methodOf(rpc: string): DescMethod {
  for (const service of Object.values(SERVICES)) {
    const m = service.methods.find((x) => x.name === rpc);
    if (m) return m;
  }
  throw new Error(`no RPC named ${rpc}`);
}

// ---------------------------------------------------------------- request shapes

const TIMESTAMP = "google.protobuf.Timestamp";
const STRUCT = "google.protobuf.Struct";

function enumFromWord(e: DescEnum, word: unknown): unknown {
  if (typeof word !== "string") return word;
  const v = e.values.find((x) => x.name === word || x.localName.toLowerCase() === word.toLowerCase());
  return v ? v.name : word;
}

/** REST-style request JSON -> proto3 JSON (enum names); everything else is already valid proto JSON. */
export function toProtoJson(desc: DescMessage, json: JsonObject): JsonObject {
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(json)) {
    const field = desc.fields.find((f) => f.name === key || f.jsonName === key);
    out[key] = field?.fieldKind === "enum" ? (enumFromWord(field.enum, value) as JsonValue) : value;
  }
  return out;
}

function grpcTimestamp(value: unknown): unknown {
  if (typeof value !== "string") return value;
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) return value;
  // Date.parse stops at the millisecond; the fraction as written keeps the rest (to the nanosecond).
  const fraction = /T\d\d:\d\d:\d\d\.(\d{1,9})/.exec(value)?.[1];
  const nanos = fraction === undefined ? (((ms % 1000) + 1000) % 1000) * 1_000_000 : Number(fraction.padEnd(9, "0"));
  return { seconds: String(Math.floor(ms / 1000)), nanos };
}

// protobufjs ships google/protobuf/struct.proto with camelCase field names, so even with
// keepCase a Struct's Value is {stringValue: …}; {string_value: …} would be sent as an unset value.
function grpcStructValue(v: unknown): unknown {
  if (v === null) return { nullValue: "NULL_VALUE" };
  if (typeof v === "string") return { stringValue: v };
  if (typeof v === "number") return { numberValue: v };
  if (typeof v === "boolean") return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(grpcStructValue) } };
  if (typeof v === "object") return { structValue: grpcStruct(v) };
  return v;
}

function grpcStruct(obj: unknown): unknown {
  if (typeof obj !== "object" || obj === null || Array.isArray(obj)) return obj;
  return { fields: Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, grpcStructValue(v)])) };
}

/** REST-style request JSON -> the plain object proto-loader (keepCase, enums as names) encodes. */
export function toGrpcRequest(desc: DescMessage, json: JsonObject): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(json)) {
    const field = desc.fields.find((f) => f.name === key || f.jsonName === key);
    if (!field) {
      out[key] = value;
      continue;
    }
    if (field.fieldKind === "enum") out[field.name] = enumFromWord(field.enum, value);
    else if (field.fieldKind === "message" && field.message.typeName === TIMESTAMP) out[field.name] = grpcTimestamp(value);
    else if (field.fieldKind === "message" && field.message.typeName === STRUCT) out[field.name] = grpcStruct(value);
    else out[field.name] = value;
  }
  return out;
}

// ---------------------------------------------------------------- answer shapes

function enumWord(e: DescEnum, value: unknown): JsonValue {
  if (value === null || value === undefined) return null;
  const v = typeof value === "number" ? e.value[value] : e.values.find((x) => x.name === value);
  if (!v) return value as JsonValue;
  if (v.number === 0) return null;
  return v.localName.toLowerCase();
}

function isInt64(field: DescField): boolean {
  return field.fieldKind === "scalar" && [3, 4, 6, 16, 18].includes(field.scalar);
}

function scalarShape(field: DescField, value: unknown): JsonValue {
  if (isInt64(field) && (typeof value === "string" || typeof value === "bigint")) return Number(value);
  return value as JsonValue;
}

function timestampShape(value: unknown): JsonValue {
  if (value === null || value === undefined) return null;
  if (typeof value === "string") return new Date(value).toISOString();
  const t = value as { seconds?: string | number; nanos?: number };
  return new Date(Number(t.seconds ?? 0) * 1000 + Math.floor((t.nanos ?? 0) / 1_000_000)).toISOString();
}

function structShape(value: unknown): JsonValue {
  if (value === null || value === undefined) return null;
  const s = value as { fields?: Record<string, unknown> };
  if (s.fields === undefined || typeof s.fields !== "object") return value as JsonValue;
  const valueOf = (v: any): JsonValue => {
    if (v === null || v === undefined) return null;
    for (const k of ["stringValue", "numberValue", "boolValue", "string_value", "number_value", "bool_value"]) {
      if (v[k] !== undefined && v[k] !== null) return v[k];
    }
    const struct = v.structValue ?? v.struct_value;
    if (struct) return structShape(struct);
    const list = v.listValue ?? v.list_value;
    if (list) return (list.values ?? []).map(valueOf);
    return null;
  };
  return Object.fromEntries(Object.entries(s.fields).map(([k, v]) => [k, valueOf(v)]));
}

/**
 * A message as proto JSON with proto field names (Connect: toJson; gRPC: proto-loader's
 * object) -> the REST JSON shape the gateway renders.
 */
export function restShape(desc: DescMessage, obj: any): JsonObject {
  const out: JsonObject = {};
  for (const field of desc.fields) {
    const value = obj?.[field.name] ?? obj?.[field.jsonName];
    switch (field.fieldKind) {
      case "scalar":
        out[field.name] = value === undefined || value === null ? (field.presence === 2 ? defaultScalar(field) : null) : scalarShape(field, value);
        break;
      case "enum":
        out[field.name] = enumWord(field.enum, value);
        break;
      case "message":
        if (field.message.typeName === TIMESTAMP) out[field.name] = timestampShape(value);
        else if (field.message.typeName === STRUCT) out[field.name] = structShape(value);
        else out[field.name] = value === undefined || value === null ? null : restShape(field.message, value);
        break;
      case "list": {
        const items: unknown[] = Array.isArray(value) ? value : [];
        out[field.name] = items.map((item) =>
          field.listKind === "message" ? restShape(field.message, item) : field.listKind === "enum" ? enumWord(field.enum, item) : scalarShape(field, item),
        );
        break;
      }
      case "map":
        out[field.name] = value && typeof value === "object" ? (value as JsonObject) : {};
        break;
    }
  }
  return out;
}

function defaultScalar(field: DescField): JsonValue {
  if (field.fieldKind !== "scalar") return null;
  if (isInt64(field)) return 0;
  switch (field.scalar) {
    case 8:
      return false; // bool
    case 9:
    case 12:
      return ""; // string, bytes
    default:
      return 0;
  }
}

function splitResponse(shaped: JsonObject): { data: any; meta: any } {
  return { data: shaped.data ?? null, meta: shaped.meta ?? undefined };
}

// ---------------------------------------------------------------- errors

/** google.rpc.Status from a grpc-status-details-bin trailer; only its ErrorInfo details are read. */
export function errorInfosFromStatusBytes(bytes: Uint8Array): ErrorInfo[] {
  const infos: ErrorInfo[] = [];
  const reader = new BinaryReader(bytes);
  while (reader.pos < reader.len) {
    const [no, wireType] = reader.tag();
    if (no === 3) {
      const any = fromBinary(AnySchema, reader.bytes());
      if (any.typeUrl.endsWith("/google.rpc.ErrorInfo")) infos.push(fromBinary(ErrorInfoSchema, any.value));
    } else {
      reader.skip(wireType);
    }
  }
  return infos;
}

// ---------------------------------------------------------------- clients

interface GrpcStub extends grpc.Client {
  [method: string]: any;
}
type GrpcCtor = new (address: string, creds: grpc.ChannelCredentials, options?: object) => GrpcStub;

/** proto-loader options the tests use everywhere (as a new grpc-js user would). */
export const PROTO_LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
  includeDirs: [PROTO_DIR, THIRD_PARTY_PROTO_DIR],
};

let packageDefinition: grpc.GrpcObject | undefined;

/** The grpc-js package object of the contract plus health and reflection, loaded from .proto files. */
export function grpcPackage(): grpc.GrpcObject {
  packageDefinition ??= grpc.loadPackageDefinition(
    protoLoader.loadSync(
      [
        "accountbalance/v1/account_balance_service.proto",
        "accountbalance/v1/account_balance_admin_service.proto",
        "grpc/health/v1/health.proto",
        "grpc/reflection/v1/reflection.proto",
      ],
      PROTO_LOADER_OPTIONS,
    ),
  );
  return packageDefinition;
}

/** A grpc-js client of a fully qualified service, e.g. "grpc.health.v1.Health". */
export function grpcClient(port: number, serviceTypeName: string): GrpcStub {
  let node: any = grpcPackage();
  for (const part of serviceTypeName.split(".")) node = node?.[part];
  if (typeof node !== "function") throw new Error(`grpc-js: ${serviceTypeName} not loaded`);
  return new (node as GrpcCtor)(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
}

export function grpcMetadata(auth: Auth = {}): grpc.Metadata {
  const md = new grpc.Metadata();
  if (auth.session !== undefined) md.set("x-session-id", auth.session);
  if (auth.bearer !== undefined) md.set("authorization", `Bearer ${auth.bearer}`);
  for (const [k, v] of Object.entries(auth.headers ?? {})) md.set(k.toLowerCase(), v);
  return md;
}

export function authHeaders(auth: Auth = {}): Record<string, string> {
  const h: Record<string, string> = { ...auth.headers };
  if (auth.session !== undefined) h["x-session-id"] = auth.session;
  if (auth.bearer !== undefined) h.authorization = `Bearer ${auth.bearer}`;
  return h;
}

/** The REST path and the part of the request that goes to query or body, from the method's http rule. */
export function restRoute(
  route: { http: string; path: string },
  request: JsonObject,
): { method: string; path: string; rest: JsonObject } {
  const rest: JsonObject = { ...request };
  const path = route.path.replace(/\{([a-z_]+)\}/g, (_, name: string) => {
    const value = rest[name];
    delete rest[name];
    return encodeURIComponent(String(value ?? ""));
  });
  return { method: route.http, path, rest };
}

export function queryString(params: JsonObject): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === null || v === undefined) continue;
    q.set(k, typeof v === "object" ? JSON.stringify(v) : String(v));
  }
  const s = q.toString();
  return s === "" ? "" : `?${s}`;
}

/** A raw REST exchange: status, parsed JSON body (undefined if not JSON) and the text. */
export async function restFetch(
  baseUrl: string,
  method: string,
  path: string,
  init: { headers?: Record<string, string>; body?: string; signal?: AbortSignal } = {},
): Promise<{ status: number; body: any; text: string; headers: Headers }> {
  const res = await fetch(`${baseUrl}${path}`, {
    method,
    headers: init.headers,
    body: init.body,
    signal: init.signal ?? AbortSignal.timeout(20_000),
  });
  const text = await res.text();
  let body: any;
  try {
    body = text === "" ? undefined : JSON.parse(text);
  } catch {
    body = undefined;
  }
  return { status: res.status, body, text, headers: res.headers };
}

/** Where the REST route of an RPC lives: its google.api.http rule, relative to the base path. */
export interface HttpRule {
  http: "GET" | "POST" | "PUT" | "DELETE";
  path: string;
}

export interface Api {
  readonly baseUrl: string;
  readonly port: number;
  readonly restBase: string;
  /** Calls `rpc` with a REST-style request over `protocol`. */
  call(protocol: Protocol, rpc: string, request: JsonObject, auth?: Auth, opts?: CallOpts): Promise<Outcome>;
  /** Closes the gRPC channels. */
  close(): void;
}

/**
 * Clients of every protocol against one server. `rules` gives each RPC's REST route (the
 * table in routes.ts); `restBase` the gateway's base path.
 */
export function createApi(port: number, rules: Record<string, HttpRule>, restBase = DEFAULT_REST_BASE): Api {
  const baseUrl = `http://127.0.0.1:${port}`;
  const transports: Record<"connect-json" | "connect-binary", Transport> = {
    "connect-json": createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: false }),
    "connect-binary": createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: true }),
  };
  const grpcStubs = new Map<string, GrpcStub>();
  const stub = (service: DescService) => {
    let s = grpcStubs.get(service.typeName);
    if (!s) {
      s = grpcClient(port, service.typeName);
      grpcStubs.set(service.typeName, s);
    }
    return s;
  };

  async function viaRest(rpc: string, request: JsonObject, auth: Auth | undefined, opts: CallOpts): Promise<Outcome> {
    const rule = rules[rpc];
    if (!rule) throw new Error(`no REST rule for ${rpc}`);
    const { method, path, rest } = restRoute(rule, request);
    const headers = { ...authHeaders(auth), ...opts.headers };
    let url = `${restBase}${path === "/" ? "" : path}`;
    let body: string | undefined;
    if (method === "GET" || method === "DELETE") url += queryString(rest);
    else {
      headers["content-type"] = "application/json";
      body = JSON.stringify(rest);
    }
    const res = await restFetch(baseUrl, method, url, { headers, body });
    if (res.body?.success === true) {
      return { ok: true, protocol: "rest", status: res.status, data: res.body.data, meta: res.body.meta, body: res.body };
    }
    return {
      ok: false,
      protocol: "rest",
      status: res.status,
      code: undefined,
      reason: typeof res.body?.code === "string" ? res.body.code : undefined,
      message: typeof res.body?.error === "string" ? res.body.error : res.text,
      body: res.body,
    };
  }

  async function viaConnect(kind: "connect-json" | "connect-binary", m: DescMethod, request: JsonObject, auth: Auth | undefined, opts: CallOpts): Promise<Outcome> {
    const client = createClient(m.parent, transports[kind]) as unknown as Record<string, (req: Message, o: CallOptions) => Promise<Message>>;
    const message = fromJson(m.input, toProtoJson(m.input, request));
    const callOptions: CallOptions = { headers: authHeaders(auth) };
    if (opts.timeoutMs !== undefined) callOptions.timeoutMs = opts.timeoutMs;
    try {
      const res = await client[m.localName]!(message, callOptions);
      const shaped = restShape(m.output, toJson(m.output, res as never, { useProtoFieldName: true, alwaysEmitImplicit: true }));
      return { ok: true, protocol: kind, status: 200, ...splitResponse(shaped) };
    } catch (err) {
      const e = ConnectError.from(err);
      const infos = e.findDetails(ErrorInfoSchema);
      return { ok: false, protocol: kind, status: undefined, code: e.code, reason: infos[0]?.reason, message: e.rawMessage, errorInfo: infos };
    }
  }

  function viaGrpc(m: DescMethod, request: JsonObject, auth: Auth | undefined, opts: CallOpts): Promise<Outcome> {
    const client = stub(m.parent);
    const options: grpc.CallOptions = {};
    options.deadline = Date.now() + (opts.timeoutMs ?? 20_000);
    return new Promise((resolve) => {
      client[m.name](toGrpcRequest(m.input, request), grpcMetadata(auth), options, (err: grpc.ServiceError | null, res: unknown) => {
        if (err) {
          const bin = err.metadata?.get("grpc-status-details-bin")[0];
          const infos = bin instanceof Buffer ? errorInfosFromStatusBytes(bin) : [];
          resolve({ ok: false, protocol: "grpc", status: undefined, code: err.code as number as Code, reason: infos[0]?.reason, message: err.details, errorInfo: infos });
          return;
        }
        resolve({ ok: true, protocol: "grpc", status: 200, ...splitResponse(restShape(m.output, res)) });
      });
    });
  }

  return {
    baseUrl,
    port,
    restBase,
    call(protocol, rpc, request, auth, opts = {}) {
      const m = methodOf(rpc);
      switch (protocol) {
        case "rest":
          return viaRest(rpc, request, auth, opts);
        case "connect-json":
        case "connect-binary":
          return viaConnect(protocol, m, request, auth, opts);
        case "grpc":
          return viaGrpc(m, request, auth, opts);
      }
    },
    close() {
      for (const s of grpcStubs.values()) s.close();
      grpcStubs.clear();
    },
  };
}
