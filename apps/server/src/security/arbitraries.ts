import fc from "fast-check";
import { create, toBinary, type DescMessage, type DescMethod } from "@bufbuild/protobuf";
import { AccountBalanceService } from "@account-balance/proto/accountbalance/v1/account_balance_service_pb.js";
import { AccountBalanceAdminService } from "@account-balance/proto/accountbalance/v1/account_balance_admin_service_pb.js";
import { ROUTES, type RouteRow } from "../testing/routes.js";

/**
 * fast-check arbitraries of hostile input for every protocol the server speaks. They aim at the
 * parsers and checks in front of the ledger: wrong types, numbers past int64 and 2^53, floats,
 * deep nesting, very long strings, bytes that are not UTF-8, garbage credentials and headers.
 * Most inputs carry a valid credential (the `auth` slot chooses), so that they get past
 * authentication and reach input validation.
 */

export const METHODS: readonly DescMethod[] = [...AccountBalanceService.methods, ...AccountBalanceAdminService.methods];
export const MUTATING = new Set(["CreateBalance", "UpdateBalance", "CloseBalance", "CreditBalance", "DebitBalance"]);

/** Who a fuzzed request claims to be; the test turns it into headers. */
export type AuthChoice =
  | { kind: "owner" | "admin" | "service" | "none" }
  | { kind: "owner-cookie" | "owner-query" }
  | { kind: "garbage-session" | "garbage-bearer" | "garbage-cookie"; value: string };

/** Header-safe garbage: latin1 without control characters (what node:http lets a client send). */
export const headerGarbage = fc.oneof(
  fc.string({ unit: fc.integer({ min: 0x20, max: 0xfe }).map((c) => String.fromCharCode(c === 0x7f ? 0xff : c)), maxLength: 80 }),
  fc.constantFrom("", " ", "null", "undefined", "Bearer", "bal_", "../../etc/passwd", "' or 1=1 --", "%00", "\t", "x".repeat(5000)),
);

export const authChoice: fc.Arbitrary<AuthChoice> = fc.oneof(
  { weight: 50, arbitrary: fc.constant({ kind: "owner" as const }) },
  { weight: 18, arbitrary: fc.constant({ kind: "service" as const }) },
  { weight: 8, arbitrary: fc.constant({ kind: "admin" as const }) },
  { weight: 3, arbitrary: fc.constant({ kind: "owner-cookie" as const }) },
  { weight: 3, arbitrary: fc.constant({ kind: "owner-query" as const }) },
  { weight: 5, arbitrary: headerGarbage.map((value) => ({ kind: "garbage-session" as const, value })) },
  { weight: 3, arbitrary: headerGarbage.map((value) => ({ kind: "garbage-bearer" as const, value })) },
  { weight: 3, arbitrary: headerGarbage.map((value) => ({ kind: "garbage-cookie" as const, value })) },
  { weight: 4, arbitrary: fc.constant({ kind: "none" as const }) },
);

const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/** An id of the right shape that names no balance. */
export const unknownBalanceId = fc
  .array(fc.constantFrom(...CROCKFORD), { minLength: 26, maxLength: 26 })
  .map((cs) => `bal_${cs.join("")}`);

/** Number tokens that JSON.stringify cannot produce, written into bodies as raw text. */
export const NUMBER_TOKENS = [
  "18446744073709551616", // 2^64
  "18446744073709551615",
  "9223372036854775807",
  "9223372036854775808",
  "-9223372036854775809",
  "9007199254740992", // 2^53
  "9007199254740993",
  "-1",
  "-0",
  "0",
  "1.5",
  "1e3",
  "1e308",
  "1e400",
  "-1e400",
  "4.9e-324",
  "0.1",
  "123456789012345678901234567890",
] as const;

/** Values as they might appear in a JSON body or a query string: every type, and the edges of each. */
export const jsonish: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
  { weight: 2, arbitrary: fc.integer() },
  { weight: 1, arbitrary: fc.constantFrom(2 ** 53, -(2 ** 53), 2 ** 64, -1, 0, 1, 1.5, -0.5, 1e308, Number.MAX_SAFE_INTEGER) },
  { weight: 1, arbitrary: fc.constantFrom(...NUMBER_TOKENS) }, // as strings: int64 accepts decimal strings
  { weight: 2, arbitrary: fc.string({ maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 40 }) },
  { weight: 1, arbitrary: fc.constantFrom("USD", "usd", "EUR", "credits", "BALANCE_TYPE_CREDITS", "active", "closed", "expired", "2030-01-01T00:00:00Z", "not-a-date", "9999-99-99T99:99:99Z", true, false, null) },
  { weight: 1, arbitrary: fc.dictionary(fc.string({ maxLength: 10 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 5 }) },
  { weight: 1, arbitrary: fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 5 }) },
);

/** Every field name of the contract's requests, in both spellings, and a few that are not. */
export const FIELD_NAMES: readonly string[] = [
  ...new Set(
    METHODS.flatMap((m) => m.input.fields.flatMap((f) => [f.name, f.jsonName])).concat([
      "__proto__",
      "constructor",
      "data",
      "success",
      "@type",
      "metadata.source",
      "",
    ]),
  ),
];

export const fieldName = fc.oneof({ weight: 5, arbitrary: fc.constantFrom(...FIELD_NAMES) }, { weight: 1, arbitrary: fc.string({ maxLength: 12 }) });

/** Structural extremes, built once: they are too big to generate per run. */
function nested(depth: number, open: string, close: string, leaf = '"x"'): string {
  return open.repeat(depth) + leaf + close.repeat(depth);
}
export const ONE_MB_STRING = "a".repeat(1_000_000);
export const TWO_MB_STRING = "b".repeat(2_000_000);
const EXTREME_BODIES: readonly string[] = [
  `{"metadata":${nested(2000, '{"a":', "}")}}`,
  `{"metadata":{"a":${nested(2000, "[", "]")}}}`,
  `{"unknown_field":${nested(2000, '{"a":', "}")}}`,
  nested(2000, "[", "]"),
  `{"metadata":${nested(50_000, '{"a":', "}")}}`,
  `{"description":"${ONE_MB_STRING}"}`,
  `{"metadata":{"k":"${ONE_MB_STRING}"}}`,
  `{"description":"${TWO_MB_STRING}"}`,
  `{"reference_code":"${"r".repeat(200_000)}"}`,
  `{"metadata":{${Array.from({ length: 20_000 }, (_, i) => `"k${i}":"v"`).join(",")}}}`,
];

/** Bytes that are not UTF-8: lone continuation bytes, overlong forms, surrogates, truncated sequences. */
export const INVALID_UTF8: readonly Buffer[] = [
  Buffer.from([0xff]),
  Buffer.from([0xfe, 0xff]),
  Buffer.from([0xc3, 0x28]),
  Buffer.from([0xc0, 0xaf]), // overlong "/"
  Buffer.from([0xed, 0xa0, 0x80]), // UTF-16 surrogate
  Buffer.from([0xf4, 0x90, 0x80, 0x80]), // past U+10FFFF
  Buffer.from([0xe2, 0x82]), // truncated
  Buffer.from([0x80]),
];

export interface BodyChoice {
  bytes: Buffer;
  /** What the body is meant to be, for the report. */
  shape: string;
}

const raw = (s: string, shape: string): BodyChoice => ({ bytes: Buffer.from(s, "utf8"), shape });

/** A JSON-ish request body: mostly objects with the contract's field names and hostile values. */
export const jsonBody: fc.Arbitrary<BodyChoice> = fc.oneof(
  {
    weight: 10,
    arbitrary: fc.dictionary(fieldName, jsonish, { maxKeys: 6 }).map((o) => raw(JSON.stringify(o), "object")),
  },
  {
    weight: 3,
    arbitrary: fc
      .tuple(fieldName, fc.constantFrom(...NUMBER_TOKENS), fc.dictionary(fieldName, jsonish, { maxKeys: 3 }))
      .map(([k, tok, rest]) => {
        const others = JSON.stringify(rest).slice(1, -1);
        return raw(`{${JSON.stringify(k)}:${tok}${others ? `,${others}` : ""}}`, "number token");
      }),
  },
  { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 4 }).map((v) => raw(JSON.stringify(v) ?? "null", "any json")) },
  {
    weight: 2,
    arbitrary: fc.tuple(fieldName, fc.constantFrom(...INVALID_UTF8)).map(([k, bad]) => ({
      bytes: Buffer.concat([Buffer.from(`{${JSON.stringify(k)}:"`), bad, Buffer.from('"}')]),
      shape: "invalid utf-8",
    })),
  },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 200 }).map((b) => ({ bytes: Buffer.from(b), shape: "random bytes" })) },
  { weight: 1, arbitrary: fc.string({ maxLength: 60 }).map((s) => raw(s, "text")) },
  { weight: 1, arbitrary: fc.constantFrom("", "{", "}", "{}", "[]", "null", '{"a":1,}', "{'a':1}", '{"a":1}{"b":2}', "\ufeff{}").map((s) => raw(s, "malformed json")) },
  { weight: 1, arbitrary: fc.constantFrom(...EXTREME_BODIES).map((s) => raw(s, s.length > 1_048_576 ? "oversized" : "extreme")) },
);

/**
 * A query part sent as typed: HTTP/1.1 cannot carry spaces or non-ASCII in a request line, so
 * only those are escaped; stray "%", "%zz" and "%ff" stay as they are.
 */
function rawQueryPart(s: string): string {
  return Array.from(s, (c) => (/^[\x21-\x7e]$/.test(c) && c !== "#" ? c : enc(c).replace(/%25/g, "%"))).join("");
}

/** encodeURIComponent, except that a lone surrogate becomes its (invalid) UTF-8 bytes instead of throwing. */
export function enc(s: string): string {
  return Array.from(s, (c) => {
    try {
      return encodeURIComponent(c);
    } catch {
      return "%ED%A0%80";
    }
  }).join("");
}

/** Query strings: the contract's field names (and others) with typed and untyped garbage, sometimes raw. */
export const queryString: fc.Arbitrary<string> = fc
  .array(
    fc.tuple(
      fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...FIELD_NAMES, "within_days", "days", "session_id", "metadata.x", "a.b.c", "limit[]") }, { weight: 1, arbitrary: fc.string({ maxLength: 10 }) }),
      fc.oneof(
        { weight: 3, arbitrary: jsonish.map((v) => (typeof v === "string" ? v : JSON.stringify(v) ?? "")) },
        { weight: 1, arbitrary: fc.constantFrom("%ff", "%zz", "%", "%00", "%C0%AF", "+", "a%20b", "%E2%82") },
      ),
      fc.boolean(),
    ),
    { maxLength: 6 },
  )
  .map((pairs) =>
    pairs.length === 0
      ? ""
      : "?" + pairs.map(([k, v, encode]) => (encode ? `${enc(k)}=${enc(v)}` : rawQueryPart(`${k}=${v}`))).join("&"),
  );

/** A path variable: the fixture balance, an id of the right shape, or garbage (raw or encoded). */
export function pathValue(known: string): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 5, arbitrary: fc.constant(known) },
    { weight: 2, arbitrary: unknownBalanceId },
    { weight: 2, arbitrary: fc.string({ maxLength: 40 }).map(enc) },
    { weight: 1, arbitrary: fc.constantFrom("%ff", "%zz", "..", "%2e%2e", "me", "users", "expiring", "x".repeat(5000), "bal_%00", "%F0%9F%92%A9") },
  );
}

/** Extra headers a client might send: idempotency keys, trusted-header spoofing, odd encodings. */
export const extraHeaders: fc.Arbitrary<Record<string, string>> = fc
  .record(
    {
      "idempotency-key": headerGarbage,
      "x-user-id": headerGarbage,
      "x-user-type": fc.constantFrom("admin", "superadmin", "service", "customer"),
      "content-encoding": fc.constantFrom("gzip", "br", "identity", "deflate", "x-unknown"),
      "accept-encoding": fc.constantFrom("gzip", "br", "*", "identity;q=0"),
      "x-forwarded-for": headerGarbage,
      "connect-timeout-ms": fc.constantFrom("0", "-1", "abc", "99999999999999999999", "1"),
    },
    { requiredKeys: [] },
  )
  .map((h) => Object.fromEntries(Object.entries(h).filter(([, v]) => v !== undefined)) as Record<string, string>);

export const contentType = fc.oneof(
  { weight: 12, arbitrary: fc.constant("application/json") },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      "application/json; charset=utf-8",
      "application/json; charset=latin1",
      "text/plain",
      "application/x-www-form-urlencoded",
      "multipart/form-data; boundary=x",
      "application/proto",
      "",
      "application/json; charset=utf-16",
    ),
  },
);

export interface RestInput {
  route: RouteRow;
  /** Undefined: the route's own method. */
  method: string | undefined;
  id: string;
  userId: string;
  query: string;
  body: BodyChoice | undefined;
  contentType: string | undefined;
  auth: AuthChoice;
  headers: Record<string, string>;
}

export function restInput(knownBalanceId: string, knownUserId: string): fc.Arbitrary<RestInput> {
  return fc.record({
    route: fc.constantFrom(...ROUTES),
    method: fc.oneof({ weight: 12, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.constantFrom("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD") }),
    id: pathValue(knownBalanceId),
    userId: fc.oneof(fc.constant(knownUserId), fc.string({ maxLength: 30 }).map(enc), fc.constantFrom("%ff", "x".repeat(3000))),
    query: queryString,
    body: fc.oneof({ weight: 8, arbitrary: jsonBody }, { weight: 1, arbitrary: fc.constant(undefined) }),
    contentType: fc.oneof({ weight: 10, arbitrary: contentType }, { weight: 1, arbitrary: fc.constant(undefined) }),
    auth: authChoice,
    headers: fc.oneof({ weight: 3, arbitrary: fc.constant({}) }, { weight: 1, arbitrary: extraHeaders }),
  });
}

export interface ConnectJsonInput {
  method: DescMethod | undefined;
  body: BodyChoice;
  contentType: string;
  auth: AuthChoice;
  headers: Record<string, string>;
  /** Connect GET (?encoding=json&message=…) instead of POST. */
  get: boolean;
}

/** The contract's JSON field names with the fixture id mixed in, so that some bodies are nearly valid. */
function nearlyValidJson(knownBalanceId: string, knownUserId: string): fc.Arbitrary<BodyChoice> {
  return fc
    .tuple(
      fc.option(fc.constantFrom(knownBalanceId), { nil: undefined }),
      fc.option(fc.constantFrom(knownUserId), { nil: undefined }),
      fc.dictionary(fieldName, jsonish, { maxKeys: 4 }),
    )
    .map(([id, userId, rest]) => {
      const o: Record<string, unknown> = { ...rest };
      if (id !== undefined) o.id = id;
      if (userId !== undefined) o.userId = userId;
      return raw(JSON.stringify(o), "nearly valid");
    });
}

export function connectJsonInput(knownBalanceId: string, knownUserId: string): fc.Arbitrary<ConnectJsonInput> {
  return fc.record({
    method: fc.oneof({ weight: 20, arbitrary: fc.constantFrom(...METHODS) }, { weight: 1, arbitrary: fc.constant(undefined) }),
    body: fc.oneof({ weight: 3, arbitrary: jsonBody }, { weight: 2, arbitrary: nearlyValidJson(knownBalanceId, knownUserId) }),
    contentType: fc.oneof({ weight: 12, arbitrary: fc.constant("application/json") }, { weight: 1, arbitrary: contentType }),
    auth: authChoice,
    headers: fc.oneof({ weight: 3, arbitrary: fc.constant({}) }, { weight: 1, arbitrary: extraHeaders }),
    get: fc.oneof({ weight: 15, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
  });
}

/** A plausible message of `desc`: the fields a valid request would set, for mutation. */
function sampleMessage(desc: DescMessage, knownBalanceId: string, knownUserId: string): Uint8Array {
  const init: Record<string, unknown> = {};
  for (const f of desc.fields) {
    if (f.name === "id") init.id = knownBalanceId;
    else if (f.name === "user_id") init.userId = knownUserId;
    else if (f.name === "amount_cents") init.amountCents = 1n;
    else if (f.name === "description") init.description = "fuzz";
    else if (f.name === "limit") init.limit = 5;
  }
  return toBinary(desc, create(desc, init as never));
}

/** Protobuf payloads: random bytes, and valid messages truncated, flipped, or extended with hostile fields. */
export function protoPayload(method: DescMethod, knownBalanceId: string, knownUserId: string): fc.Arbitrary<{ bytes: Buffer; shape: string }> {
  const valid = Buffer.from(sampleMessage(method.input, knownBalanceId, knownUserId));
  const hostileFields: Buffer[] = [
    Buffer.from([0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), // field 2 varint = -1 (int64)
    Buffer.from([0x10, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]), // 11-byte varint
    Buffer.from([0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]), // 2^63-1
    Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]), // field 1 length 2^32-1
    Buffer.from([0x0a, 0x02, 0xff, 0xfe]), // field 1: invalid UTF-8
    Buffer.from([0x0b]), // start group
    Buffer.from([0x0c]), // end group without start
    Buffer.from([0x0f]), // wire type 7
    Buffer.from([0x00, 0x01]), // field number 0
    Buffer.from([0xf8, 0xff, 0xff, 0xff, 0x0f, 0x01]), // field 2^29-1
    Buffer.from([0x5a, 0x03, 0x0a, 0x01, 0x41]), // map entry with key only
    Buffer.from([0x22, 0x04, 0x0a, 0x02, 0x0a, 0x00]), // nested message garbage
  ];
  return fc.oneof(
    { weight: 3, arbitrary: fc.uint8Array({ maxLength: 300 }).map((b) => ({ bytes: Buffer.from(b), shape: "random bytes" })) },
    {
      weight: 3,
      arbitrary: fc.tuple(fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 4 })).map(([at, xs]) => {
        const b = Buffer.from(valid);
        if (b.length > 0) xs.forEach((x, i) => (b[(at + i) % b.length] = x));
        return { bytes: b, shape: "flipped" };
      }),
    },
    { weight: 2, arbitrary: fc.nat().map((n) => ({ bytes: valid.subarray(0, valid.length === 0 ? 0 : n % valid.length), shape: "truncated" })) },
    {
      weight: 3,
      arbitrary: fc.constantFrom(...hostileFields).map((h) => ({ bytes: Buffer.concat([valid, h]), shape: "hostile field" })),
    },
    { weight: 1, arbitrary: fc.constant({ bytes: valid, shape: "valid" }) },
    { weight: 1, arbitrary: fc.constant({ bytes: Buffer.alloc(0), shape: "empty" }) },
  );
}

export interface BinaryInput {
  method: DescMethod;
  payload: { bytes: Buffer; shape: string };
  contentType: string;
  auth: AuthChoice;
  headers: Record<string, string>;
}

export function connectBinaryInput(knownBalanceId: string, knownUserId: string): fc.Arbitrary<BinaryInput> {
  return fc.constantFrom(...METHODS).chain((method) =>
    fc.record({
      method: fc.constant(method),
      payload: protoPayload(method, knownBalanceId, knownUserId),
      contentType: fc.oneof({ weight: 12, arbitrary: fc.constant("application/proto") }, { weight: 1, arbitrary: fc.constantFrom("application/protobuf", "application/proto; charset=x", "application/octet-stream", "application/grpc") }),
      auth: authChoice,
      headers: fc.oneof({ weight: 3, arbitrary: fc.constant({}) }, { weight: 1, arbitrary: extraHeaders }),
    }),
  );
}

export interface GrpcInput {
  method: DescMethod;
  payload: { bytes: Buffer; shape: string };
  /** The 5-byte prefix: flag and declared length (undefined: the real length). */
  flag: number;
  declaredLength: number | undefined;
  /** Extra bytes after the message (a second frame or a torn one). */
  trailing: Buffer;
  contentType: string;
  grpcEncoding: string | undefined;
  grpcTimeout: string | undefined;
  auth: AuthChoice;
}

export function grpcInput(knownBalanceId: string, knownUserId: string): fc.Arbitrary<GrpcInput> {
  return fc.constantFrom(...METHODS).chain((method) =>
    fc.record({
      method: fc.constant(method),
      payload: protoPayload(method, knownBalanceId, knownUserId),
      flag: fc.oneof({ weight: 10, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.constantFrom(1, 2, 0x80, 0xff) }),
      declaredLength: fc.oneof(
        { weight: 10, arbitrary: fc.constant(undefined) },
        { weight: 1, arbitrary: fc.constantFrom(0, 1, 4, 100, 65_536, 1_048_577, 0x7fffffff, 0xffffffff) },
      ),
      trailing: fc.oneof(
        { weight: 12, arbitrary: fc.constant(Buffer.alloc(0)) },
        { weight: 1, arbitrary: fc.uint8Array({ maxLength: 12 }).map((b) => Buffer.from(b)) },
        { weight: 1, arbitrary: fc.constant(Buffer.from([0, 0, 0, 0, 0])) },
      ),
      contentType: fc.oneof(
        { weight: 12, arbitrary: fc.constant("application/grpc") },
        { weight: 1, arbitrary: fc.constantFrom("application/grpc+proto", "application/grpc+json", "application/grpc+xml", "application/grpc-web", "text/plain") },
      ),
      grpcEncoding: fc.oneof({ weight: 10, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.constantFrom("gzip", "identity", "deflate", "snappy", "") }),
      grpcTimeout: fc.oneof({ weight: 10, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.constantFrom("1S", "0n", "abc", "99999999H", "-1S", "1") }),
      auth: authChoice,
    }),
  );
}
