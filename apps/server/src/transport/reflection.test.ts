import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createFileRegistry, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import {
  AccountBalanceService,
  file_accountbalance_v1_account_balance_service,
} from "@account-balance/proto/accountbalance/v1/account_balance_service_pb.js";
import { file_accountbalance_v1_account_balance_admin_service } from "@account-balance/proto/accountbalance/v1/account_balance_admin_service_pb.js";
import { file_grpc_health_v1_health } from "@account-balance/proto/grpc/health/v1/health_pb.js";
import { listen, type Listening } from "./listen.js";
import { registerHealth } from "./health.js";
import { registerReflection } from "./reflection.js";

const THIRD_PARTY = fileURLToPath(new URL("../../../../packages/proto/third_party/", import.meta.url));

interface ReflectionResponse {
  validHost: string;
  originalRequest: object;
  messageResponse: string;
  listServicesResponse?: { service: Array<{ name: string }> };
  fileDescriptorResponse?: { fileDescriptorProto: Buffer[] };
  allExtensionNumbersResponse?: { baseTypeName: string; extensionNumber: number[] };
  errorResponse?: { errorCode: number; errorMessage: string };
}
type ReflectionStub = grpc.Client & { serverReflectionInfo(): grpc.ClientDuplexStream<object, ReflectionResponse> };

let server: Listening;
const clients: grpc.Client[] = [];

beforeAll(async () => {
  const handler = connectNodeAdapter({
    routes: (r: ConnectRouter) => {
      // Only Health is implemented here; reflection also lists what `files` declares.
      registerHealth(r, async () => "SERVING");
      registerReflection(r, [
        file_accountbalance_v1_account_balance_service,
        file_accountbalance_v1_account_balance_admin_service,
        file_grpc_health_v1_health,
      ]);
    },
    readMaxBytes: 64 * 1024,
    grpc: true,
    grpcWeb: true,
    connect: true,
    requireConnectProtocolHeader: false,
  });
  server = await listen({ port: 0, host: "127.0.0.1", handler });
});
afterAll(async () => {
  clients.forEach((c) => c.close());
  await server.close(0);
});

function stub(version: "v1" | "v1alpha"): ReflectionStub {
  const def = protoLoader.loadSync(`grpc/reflection/${version}/reflection.proto`, { includeDirs: [THIRD_PARTY], oneofs: true });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    grpc: { reflection: Record<string, { ServerReflection: new (a: string, c: grpc.ChannelCredentials) => ReflectionStub }> };
  };
  const client = new pkg.grpc.reflection[version]!.ServerReflection(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
  clients.push(client);
  return client;
}

/** Sends the requests on one stream, like grpcurl does, and collects the answers. */
function ask(version: "v1" | "v1alpha", ...requests: object[]): Promise<ReflectionResponse[]> {
  return new Promise((resolve, reject) => {
    const call = stub(version).serverReflectionInfo();
    const out: ReflectionResponse[] = [];
    call.on("data", (m: ReflectionResponse) => {
      out.push(m);
      if (out.length === requests.length) call.end();
    });
    call.on("end", () => resolve(out));
    call.on("error", reject);
    for (const r of requests) call.write(r);
  });
}

const decode = (res: ReflectionResponse) => res.fileDescriptorResponse!.fileDescriptorProto.map((b) => fromBinary(FileDescriptorProtoSchema, b));

describe.each(["v1", "v1alpha"] as const)("grpc.reflection.%s", (version) => {
  it("lists the services", async () => {
    const [res] = await ask(version, { host: "h", listServices: "" });
    expect(res!.messageResponse).toBe("listServicesResponse");
    expect(res!.validHost).toBe("h");
    expect(res!.listServicesResponse!.service.map((s) => s.name)).toEqual([
      "accountbalance.v1.AccountBalanceAdminService",
      "accountbalance.v1.AccountBalanceService",
      "grpc.health.v1.Health",
      "grpc.reflection.v1.ServerReflection",
      "grpc.reflection.v1alpha.ServerReflection",
    ]);
  });

  it("describes a service: its file first, then every file it imports", async () => {
    const [res] = await ask(version, { fileContainingSymbol: "accountbalance.v1.AccountBalanceService" });
    const files = decode(res!);
    expect(files[0]!.name).toBe("accountbalance/v1/account_balance_service.proto");
    expect(files[0]!.service.map((s) => s.name)).toContain("AccountBalanceService");
    const names = files.map((f) => f.name);
    expect(names).toEqual(expect.arrayContaining(["google/api/annotations.proto", "buf/validate/validate.proto", "google/protobuf/descriptor.proto"]));
    expect(new Set(names).size).toBe(names.length);

    // The set is complete: a registry built from it resolves the service and every method.
    const byName = new Map(files.map((f) => [f.name, f]));
    const registry = createFileRegistry(files[0]!, (name) => byName.get(name));
    const service = registry.getService("accountbalance.v1.AccountBalanceService");
    expect(service?.methods.map((m) => m.name).sort()).toEqual(AccountBalanceService.methods.map((m) => m.name).sort());
  });

  it("finds the file of a method, a message, a field and a nested enum value's scope", async () => {
    const method = `accountbalance.v1.AccountBalanceService.${AccountBalanceService.methods[0]!.name}`;
    const input = AccountBalanceService.methods[0]!.input;
    const answers = await ask(
      version,
      { fileContainingSymbol: method },
      { fileContainingSymbol: input.typeName },
      { fileContainingSymbol: `${input.typeName}.${input.fields[0]!.name}` },
      { fileContainingSymbol: ".grpc.health.v1.HealthCheckResponse.SERVING" },
    );
    expect(decode(answers[0]!)[0]!.name).toBe("accountbalance/v1/account_balance_service.proto");
    expect(decode(answers[1]!)[0]!.name).toBe(input.file.proto.name);
    expect(decode(answers[2]!)[0]!.name).toBe(input.file.proto.name);
    expect(decode(answers[3]!)[0]!.name).toBe("grpc/health/v1/health.proto");
  });

  it("returns a file by name", async () => {
    const [res] = await ask(version, { fileByFilename: "grpc/health/v1/health.proto" });
    const [file] = decode(res!);
    expect(file!.package).toBe("grpc.health.v1");
    expect(file!.service[0]!.method.map((m) => m.name)).toEqual(["Check", "Watch", "List"]);
  });

  it("answers the extension questions from the descriptors", async () => {
    const [numbers, byExtension] = await ask(
      version,
      { allExtensionNumbersOfType: "google.protobuf.MethodOptions" },
      { fileContainingExtension: { containingType: "google.protobuf.MethodOptions", extensionNumber: 72295728 } },
    );
    // google.api.http is extension 72295728 of MethodOptions.
    expect(numbers!.allExtensionNumbersResponse!.extensionNumber).toContain(72295728);
    expect(decode(byExtension!)[0]!.name).toBe("google/api/annotations.proto");
  });

  it("answers unknown names with an error response and keeps the stream usable", async () => {
    const [a, b, c, d] = await ask(
      version,
      { fileContainingSymbol: "no.such.Symbol" },
      { fileByFilename: "nope.proto" },
      { fileContainingExtension: { containingType: "google.protobuf.MethodOptions", extensionNumber: 1 } },
      { listServices: "*" },
    );
    for (const r of [a, b, c]) {
      expect(r!.messageResponse).toBe("errorResponse");
      expect(r!.errorResponse!.errorCode).toBe(grpc.status.NOT_FOUND);
    }
    expect(a!.errorResponse!.errorMessage).toBe("symbol no.such.Symbol not found");
    expect(d!.messageResponse).toBe("listServicesResponse");
  });

  it("refuses a request with nothing set", async () => {
    const [res] = await ask(version, { host: "" });
    expect(res!.errorResponse!.errorCode).toBe(grpc.status.INVALID_ARGUMENT);
  });
});
