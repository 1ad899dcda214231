import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { startTestServer, type TestServer } from "../testing/server.js";

// An internal service calling with nothing but @grpc/grpc-js and @grpc/proto-loader, reading the
// .proto files (no generated code, no Connect): every RPC of both services, the status codes and
// google.rpc.ErrorInfo details of refusals, readable messages, and reflection the grpcurl way.

const REPO = fileURLToPath(new URL("../../../../", import.meta.url));
const INCLUDE = [join(REPO, "proto"), join(REPO, "packages/proto/third_party")];
const GOOGLE_PROTOS = dirname(createRequire(import.meta.url).resolve("google-proto-files/package.json"));
const LOADER: protoLoader.Options = { keepCase: true, longs: String, enums: String, defaults: false, oneofs: true };

type Stub = grpc.Client & Record<string, (...args: any[]) => any>;
type Ctor = new (address: string, creds: grpc.ChannelCredentials) => Stub;

let server: TestServer;
let scratch: string;
let balances: Stub;
let admin: Stub;
let reflection: Stub;
/** Decoders of google.rpc.Status, ErrorInfo and FileDescriptorProto, via proto-loader only. */
let decode: { status(b: Buffer): any; errorInfo(b: Buffer): any; file(b: Buffer): any };

function lookup(pkg: grpc.GrpcObject, name: string): Ctor {
  let node: any = pkg;
  for (const part of name.split(".")) node = node[part];
  return node as Ctor;
}

beforeAll(async () => {
  server = await startTestServer();
  const address = `127.0.0.1:${server.port}`;
  const insecure = grpc.credentials.createInsecure();
  const pkg = grpc.loadPackageDefinition(
    protoLoader.loadSync(
      ["accountbalance/v1/account_balance_service.proto", "accountbalance/v1/account_balance_admin_service.proto", "grpc/reflection/v1/reflection.proto"],
      { ...LOADER, includeDirs: INCLUDE },
    ),
  );
  balances = new (lookup(pkg, "accountbalance.v1.AccountBalanceService"))(address, insecure);
  admin = new (lookup(pkg, "accountbalance.v1.AccountBalanceAdminService"))(address, insecure);
  reflection = new (lookup(pkg, "grpc.reflection.v1.ServerReflection"))(address, insecure);

  // proto-loader hands out (de)serializers for methods only, so a tiny local service whose
  // methods take the types to decode gives a decoder for each.
  scratch = mkdtempSync(join(tmpdir(), "interop-grpcjs-"));
  writeFileSync(
    join(scratch, "decoders.proto"),
    `syntax = "proto3";
package decoders;
import "google/rpc/status.proto";
import "google/rpc/error_details.proto";
import "google/protobuf/descriptor.proto";
service Decoders {
  rpc Status(google.rpc.Status) returns (google.rpc.Status);
  rpc ErrorInfo(google.rpc.ErrorInfo) returns (google.rpc.ErrorInfo);
  rpc File(google.protobuf.FileDescriptorProto) returns (google.protobuf.FileDescriptorProto);
}
`,
  );
  const defs = protoLoader.loadSync("decoders.proto", { ...LOADER, includeDirs: [scratch, GOOGLE_PROTOS] });
  const methods = defs["decoders.Decoders"] as protoLoader.ServiceDefinition;
  decode = {
    status: (b) => methods.Status!.responseDeserialize(b),
    errorInfo: (b) => methods.ErrorInfo!.responseDeserialize(b),
    file: (b) => methods.File!.responseDeserialize(b),
  };
});

afterAll(async () => {
  for (const c of [balances, admin, reflection]) c?.close();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
  await server?.close();
});

function md(auth: { session?: string; bearer?: string }): grpc.Metadata {
  const m = new grpc.Metadata();
  if (auth.session) m.set("x-session-id", auth.session);
  if (auth.bearer) m.set("authorization", `Bearer ${auth.bearer}`);
  return m;
}

function unary(stub: Stub, method: string, request: object, metadata: grpc.Metadata): Promise<any> {
  return new Promise((resolve, reject) => {
    stub[method]!(request, metadata, { deadline: Date.now() + 10_000 }, (err: grpc.ServiceError | null, res: any) => (err ? reject(err) : resolve(res)));
  });
}

function refused(stub: Stub, method: string, request: object, metadata: grpc.Metadata): Promise<grpc.ServiceError> {
  return unary(stub, method, request, metadata).then(
    (res) => {
      throw new Error(`${method} succeeded: ${JSON.stringify(res)}`);
    },
    (err: grpc.ServiceError) => err,
  );
}

/** The ErrorInfo of a refusal, read from grpc-status-details-bin as any gRPC client can. */
function errorInfoOf(err: grpc.ServiceError): { reason: string; domain: string; metadata: Record<string, string> } {
  const [bin] = err.metadata.get("grpc-status-details-bin");
  expect(Buffer.isBuffer(bin)).toBe(true);
  const status = decode.status(bin as Buffer);
  // The rich status repeats the plain one.
  expect(status.code).toBe(err.code);
  expect(status.message).toBe(err.details);
  const detail = status.details.find((d: any) => d.type_url === "type.googleapis.com/google.rpc.ErrorInfo");
  expect(detail).toBeDefined();
  return decode.errorInfo(detail.value);
}

function expectReadable(message: string): void {
  expect(message.length).toBeGreaterThan(0);
  expect(message).not.toMatch(/%3A|%2C|%20|%[0-9A-F]{2}/i);
}

describe("grpc-js + proto-loader, no generated code", () => {
  const service = () => md({ bearer: server.serviceToken });

  it("calls every RPC of both services", async () => {
    const called = new Set<string>();
    const call = async (stub: Stub, method: string, request: object, metadata: grpc.Metadata) => {
      called.add(method);
      return unary(stub, method, request, metadata);
    };
    const owner = md({ session: await server.mintSession("interop-user") });

    const created = await call(balances, "CreateBalance", { user_id: "interop-user", currency: "EUR", balance_type: "BALANCE_TYPE_CREDITS", balance_cents: "1000", metadata: { source: "grpc-js" } }, service());
    const id: string = created.data.id;
    expect(id).toMatch(/^bal_[0-9A-Z]{26}$/);
    expect(created.data).toMatchObject({ user_id: "interop-user", balance_cents: "1000", currency: "EUR", balance_type: "BALANCE_TYPE_CREDITS", status: "BALANCE_STATUS_ACTIVE" });

    expect((await call(balances, "GetBalance", { id }, owner)).data.balance_cents).toBe("1000");
    const updated = await call(balances, "UpdateBalance", { id, metadata: { fields: { note: { stringValue: "updated" } } } }, owner);
    expect(updated.data.metadata).toEqual({ note: "updated" });

    const credit = await call(balances, "CreditBalance", { id, amount_cents: "9007199254739991", description: "top up", idempotency_key: "interop-credit-1" }, service());
    expect(credit.data.balance.balance_cents).toBe("9007199254740991");
    expect(credit.data.transaction).toMatchObject({ transaction_type: "TRANSACTION_TYPE_CREDIT", amount_cents: "9007199254739991", balance_before_cents: "1000" });
    // The same key again: the first answer, nothing written.
    const replay = await call(balances, "CreditBalance", { id, amount_cents: "9007199254739991", description: "top up", idempotency_key: "interop-credit-1" }, service());
    expect(replay.data.transaction.id).toBe(credit.data.transaction.id);

    const debit = await call(balances, "DebitBalance", { id, amount_cents: "991" }, owner);
    expect(debit.data.balance.balance_cents).toBe("9007199254740000");

    const history = await call(balances, "ListBalanceTransactions", { id, limit: 10 }, owner);
    expect(history.data.map((t: any) => t.transaction_type)).toEqual(["TRANSACTION_TYPE_DEBIT", "TRANSACTION_TYPE_CREDIT", "TRANSACTION_TYPE_ADJUSTMENT"]);
    expect(history.meta).toMatchObject({ page: 1, limit: 10, total: "3" });
    expect(history.meta.hasMore ?? false).toBe(false);

    const stats = await call(balances, "GetBalanceStatistics", { id }, owner);
    expect(stats.data).toMatchObject({ balance_id: id, current_balance_cents: "9007199254740000", total_credits_cents: "9007199254739991", total_debits_cents: "991", credit_count: "1", debit_count: "1" });

    const mine = await call(balances, "ListMyBalances", { currency: "EUR" }, owner);
    expect(mine.data.map((b: any) => b.id)).toEqual([id]);
    const myTotal = await call(balances, "GetMyTotalBalance", {}, owner);
    expect(myTotal.data).toMatchObject({ currency: "EUR", total_balance_cents: "9007199254740000", balance_count: "1" });
    const myTx = await call(balances, "ListMyTransactions", { limit: 2 }, owner);
    expect(myTx.data).toHaveLength(2);
    expect(myTx.meta.hasMore).toBe(true);

    const empty = await call(balances, "CreateBalance", { currency: "USD" }, owner);
    const closed = await call(balances, "CloseBalance", { id: empty.data.id }, owner);
    expect(closed.data.status).toBe("BALANCE_STATUS_CLOSED");

    const users = await call(admin, "ListUserBalances", { user_id: "interop-user" }, service());
    expect(users.data.map((b: any) => b.id).sort()).toEqual([id, empty.data.id].sort());
    const userTotal = await call(admin, "GetUserTotalBalance", { user_id: "interop-user", currency: "EUR" }, service());
    expect(userTotal.data.total_balance_cents).toBe("9007199254740000");

    const soon = new Date(Date.now() + 2 * 86_400_000);
    const expiring = await call(balances, "CreateBalance", { user_id: "interop-user", currency: "GBP", balance_cents: "5", expires_at: { seconds: String(Math.floor(soon.getTime() / 1000)), nanos: 0 } }, service());
    const listed = await call(admin, "ListExpiringBalances", { within_days: 3 }, service());
    expect(listed.data.map((b: any) => b.id)).toEqual([expiring.data.id]);

    const contract = [...Object.keys(balances.constructor.prototype), ...Object.keys(admin.constructor.prototype)].filter((k) => /^[A-Z]/.test(k));
    expect(contract).toHaveLength(14);
    expect([...called].sort()).toEqual(contract.sort());
    const rows = await server.sql<{ n: string }>("select count(*)::text as n from account_transactions where account_balance_id = $1", [id]);
    expect(rows[0]!.n).toBe("3");
  });

  it("refuses with the spec's status codes, ErrorInfo reasons and readable messages", async () => {
    const customer = md({ session: await server.mintSession("interop-customer") });
    const id = (await unary(balances, "CreateBalance", { user_id: "interop-customer", currency: "EUR", balance_cents: "100" }, service())).data.id;

    const cases: [grpc.ServiceError, grpc.status, string][] = [
      [await refused(balances, "GetBalance", { id: "bal_01ARZ3NDEKTSV4RRFFQ69G5FAV" }, customer), grpc.status.NOT_FOUND, "NOT_FOUND"],
      [await refused(balances, "CreditBalance", { id, amount_cents: "0" }, service()), grpc.status.INVALID_ARGUMENT, "VALIDATION_FAILED"],
      [await refused(balances, "DebitBalance", { id, amount_cents: "250" }, customer), grpc.status.FAILED_PRECONDITION, "INSUFFICIENT_BALANCE"],
      [await refused(balances, "CreditBalance", { id, amount_cents: "5" }, customer), grpc.status.PERMISSION_DENIED, "FORBIDDEN"],
      [await refused(admin, "ListUserBalances", { user_id: "someone" }, customer), grpc.status.PERMISSION_DENIED, "FORBIDDEN"],
      [await refused(balances, "ListMyBalances", {}, new grpc.Metadata()), grpc.status.UNAUTHENTICATED, "UNAUTHENTICATED"],
      [await refused(balances, "ListMyBalances", {}, md({ session: "not-a-session" })), grpc.status.UNAUTHENTICATED, "UNAUTHENTICATED"],
    ];
    for (const [err, code, reason] of cases) {
      expect({ code: err.code, reason: errorInfoOf(err).reason }).toEqual({ code, reason });
      expectReadable(err.details);
    }

    const insufficient = errorInfoOf(cases[2]![0]);
    expect(insufficient).toMatchObject({ domain: "account-balance", metadata: { available_cents: "100", required_cents: "250" } });
    // Messages with reserved characters (":" "," in validation messages) arrive unescaped.
    expect(cases[1]![0].details).toMatch(/amount_cents/);

    const rows = await server.sql<{ n: string }>("select count(*)::text as n from account_transactions where account_balance_id = $1", [id]);
    expect(rows[0]!.n).toBe("1");
  });

  it("answers IDEMPOTENCY_KEY_REUSED as ALREADY_EXISTS", async () => {
    const id = (await unary(balances, "CreateBalance", { user_id: "interop-keys", currency: "EUR" }, service())).data.id;
    await unary(balances, "CreditBalance", { id, amount_cents: "10", idempotency_key: "interop-reused" }, service());
    const err = await refused(balances, "CreditBalance", { id, amount_cents: "11", idempotency_key: "interop-reused" }, service());
    expect([err.code, errorInfoOf(err).reason]).toEqual([grpc.status.ALREADY_EXISTS, "IDEMPOTENCY_KEY_REUSED"]);
    expectReadable(err.details);
  });
});

describe("reflection, the grpcurl way", () => {
  function ask(request: object): Promise<any> {
    return new Promise((resolve, reject) => {
      const stream = reflection.ServerReflectionInfo!();
      stream.on("data", (res: any) => {
        resolve(res);
        stream.end();
      });
      stream.on("error", reject);
      stream.write(request);
    });
  }

  it("lists the services (grpcurl list)", async () => {
    const res = await ask({ list_services: "" });
    const names = res.list_services_response.service.map((s: any) => s.name);
    expect(names).toEqual(expect.arrayContaining(["accountbalance.v1.AccountBalanceService", "accountbalance.v1.AccountBalanceAdminService", "grpc.health.v1.Health"]));
  });

  it.each([
    ["accountbalance.v1.AccountBalanceService", "accountbalance/v1/account_balance_service.proto", ["ListMyBalances", "GetMyTotalBalance", "ListMyTransactions", "GetBalance", "CreateBalance", "UpdateBalance", "CloseBalance", "CreditBalance", "DebitBalance", "ListBalanceTransactions", "GetBalanceStatistics"]],
    ["accountbalance.v1.AccountBalanceAdminService", "accountbalance/v1/account_balance_admin_service.proto", ["ListUserBalances", "GetUserTotalBalance", "ListExpiringBalances"]],
  ])("describes %s (grpcurl describe)", async (symbol, fileName, methods) => {
    const res = await ask({ file_containing_symbol: symbol });
    const files = res.file_descriptor_response.file_descriptor_proto.map((b: Buffer) => decode.file(b));
    const file = files.find((f: any) => f.name === fileName);
    expect(file.package).toBe("accountbalance.v1");
    const svc = file.service.find((s: any) => `accountbalance.v1.${s.name}` === symbol);
    expect(svc.method.map((m: any) => m.name)).toEqual(methods);
    const credit = svc.method.find((m: any) => m.name === "CreditBalance");
    // protobufjs bundles descriptor.proto with camelCase names, whatever keepCase says.
    if (credit) expect([credit.inputType, credit.outputType]).toEqual([".accountbalance.v1.CreditBalanceRequest", ".accountbalance.v1.CreditBalanceResponse"]);
    // grpcurl needs the imports too, to describe the messages.
    expect(files.map((f: any) => f.name)).toContain("accountbalance/v1/records.proto");
  });
});
