#!/usr/bin/env node
// Calls the service over gRPC with only @grpc/grpc-js and @grpc/proto-loader reading the
// contract's .proto files (no generated code), as an internal service would.
//
//   BASE_URL=http://localhost:8080 SERVICE_TOKEN=… node examples/grpc-js-caller.mjs
//
// Env: BASE_URL (default http://localhost:8080), SERVICE_TOKEN, USER_ID (default grpc-js-user).
// Needs the third-party protos laid out by `pnpm generate` (packages/proto/third_party).
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, "..");
const googleProtos = dirname(createRequire(import.meta.url).resolve("google-proto-files/package.json"));
const target = new URL(process.env.BASE_URL ?? "http://localhost:8080").host;
const serviceToken = process.env.SERVICE_TOKEN;
const userId = process.env.USER_ID ?? "grpc-js-user";
if (!serviceToken) throw new Error("set SERVICE_TOKEN");

// keepCase: snake_case fields as in the .proto; longs: String keeps int64 money exact.
const options = { keepCase: true, longs: String, enums: String, defaults: false, oneofs: true };
const pkg = grpc.loadPackageDefinition(
  protoLoader.loadSync(["accountbalance/v1/account_balance_service.proto"], {
    ...options,
    includeDirs: [join(repo, "proto"), join(repo, "packages/proto/third_party")],
  }),
);
const client = new pkg.accountbalance.v1.AccountBalanceService(target, grpc.credentials.createInsecure());
const decoders = protoLoader.loadSync("decode.proto", { ...options, includeDirs: [join(here, "proto"), googleProtos] })["examples.Decode"];

const metadata = new grpc.Metadata();
metadata.set("authorization", `Bearer ${serviceToken}`);

function call(method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, metadata, { deadline: Date.now() + 5_000 }, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

/** The spec's reason and details of a refusal, from the grpc-status-details-bin trailer. */
function errorInfo(err) {
  const [bin] = err.metadata.get("grpc-status-details-bin");
  if (!bin) return undefined;
  const status = decoders.Status.responseDeserialize(bin);
  const any = status.details.find((d) => d.type_url === "type.googleapis.com/google.rpc.ErrorInfo");
  return any && decoders.ErrorInfo.responseDeserialize(any.value);
}

try {
  const { data: balance } = await call("CreateBalance", { user_id: userId, currency: "EUR", balance_type: "BALANCE_TYPE_CREDITS" });
  console.log(`created ${balance.id} for ${balance.user_id}`);
  const credit = await call("CreditBalance", { id: balance.id, amount_cents: "1000", idempotency_key: `grpc-js-credit-${balance.id}` });
  console.log(`credited 1000, balance ${credit.data.balance.balance_cents}`);
  const { data: current } = await call("GetBalance", { id: balance.id });
  console.log(`balance ${current.id}: ${current.balance_cents} ${current.currency} cents`);
  try {
    await call("DebitBalance", { id: balance.id, amount_cents: "5000" });
  } catch (err) {
    const info = errorInfo(err);
    console.log(`refused: ${grpc.status[err.code]} ${info?.reason} available=${info?.metadata.available_cents} message="${err.details}"`);
  }
} finally {
  client.close();
}
