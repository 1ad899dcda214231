import net from "node:net";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  CreateBalanceRequestSchema,
  CreateBalanceResponseSchema,
  CreditBalanceRequestSchema,
  DebitBalanceRequestSchema,
  DebitBalanceResponseSchema,
} from "@account-balance/proto/accountbalance/v1/account_balance_service_pb.js";
import { ErrorInfoSchema } from "@account-balance/proto/google/rpc/error_details_pb.js";
import { findTrailerError } from "@connectrpc/connect/protocol-grpc";
import { startTestServer, type TestServer } from "../testing/server.js";
import { connectH2, frame, unframe, type H2 } from "../security/raw.js";

// The short path for plain unary gRPC and Connect calls (unary-short-path.ts) against a real
// server and database: what it answers itself, and what it must leave to connect unchanged.

const SERVICE = "/accountbalance.v1.AccountBalanceService";

let server: TestServer;
let h2: H2;
let auth: Record<string, string>;
let balanceId: string;

async function counts(): Promise<{ cents: string; transactions: string }> {
  const [r] = await server.sql<{ cents: string; transactions: string }>(
    "select balance_cents::text as cents, (select count(*) from account_transactions where account_balance_id = $1)::text as transactions from account_balances where id = $1",
    [balanceId],
  );
  return r!;
}

const debit = (amount: bigint, extra: Partial<{ description: string }> = {}) =>
  toBinary(DebitBalanceRequestSchema, create(DebitBalanceRequestSchema, { id: balanceId, amountCents: amount, ...extra }));

beforeAll(async () => {
  server = await startTestServer();
  auth = { authorization: `Bearer ${server.serviceToken}` };
  h2 = await connectH2(server.port);
  const created = await h2.call(`${SERVICE}/CreateBalance`, auth, frame(toBinary(CreateBalanceRequestSchema, create(CreateBalanceRequestSchema, { userId: "short-path-owner", currency: "EUR" }))));
  expect(created.grpcStatus).toBe(0);
  balanceId = fromBinary(CreateBalanceResponseSchema, unframe(created.data)[0]!).data!.id;
  const credit = toBinary(CreditBalanceRequestSchema, create(CreditBalanceRequestSchema, { id: balanceId, amountCents: 1000n }));
  expect((await h2.call(`${SERVICE}/CreditBalance`, auth, frame(credit))).grpcStatus).toBe(0);
});

afterAll(async () => {
  await h2?.close();
  await server?.close();
});

describe("plain unary gRPC calls", () => {
  it("a debit is answered with its movement and written once", async () => {
    const r = await h2.call(`${SERVICE}/DebitBalance`, auth, frame(debit(250n)));
    expect(r.httpStatus).toBe(200);
    expect(r.grpcStatus).toBe(0);
    expect(r.headers["content-type"]).toBe("application/grpc+proto");
    const [message, ...more] = unframe(r.data);
    expect(more).toEqual([]);
    const movement = fromBinary(DebitBalanceResponseSchema, message!).data!;
    expect(movement.balance!.balanceCents).toBe(750n);
    expect(movement.transaction!.amountCents).toBe(250n);
    expect(movement.transaction!.balanceBeforeCents).toBe(1000n);
    expect(await counts()).toEqual({ cents: "750", transactions: "2" });
  });

  it("a refusal carries its code, a readable message and its ErrorInfo, and writes nothing", async () => {
    const before = await counts();
    const r = await h2.call(`${SERVICE}/DebitBalance`, auth, frame(debit(1_000_000n)));
    expect(r.grpcStatus).toBe(9); // FAILED_PRECONDITION
    expect(r.data.length).toBe(0);
    // Reserved characters stay readable for grpc-js (which decodes with decodeURI).
    expect(r.grpcMessage).not.toMatch(/%[0-9A-F]{2}/);
    expect(r.trailers["grpc-status-details-bin"]).toBeDefined();
    const err = findTrailerError(new Headers(Object.entries(r.trailers).filter(([k]) => !k.startsWith(":")) as [string, string][]));
    expect(err?.code).toBe(9);
    expect(err?.findDetails(ErrorInfoSchema)[0]?.reason).toBe("INSUFFICIENT_BALANCE");
    expect(await counts()).toEqual(before);
  });

  it("input the validator refuses is INVALID_ARGUMENT with the field named, nothing written", async () => {
    const before = await counts();
    const r = await h2.call(`${SERVICE}/DebitBalance`, auth, frame(debit(0n)));
    expect(r.grpcStatus).toBe(3);
    expect(r.grpcMessage).toContain("amount_cents");
    expect(await counts()).toEqual(before);
  });

  it("no credentials: UNAUTHENTICATED before anything is read from the database", async () => {
    const before = await counts();
    const r = await h2.call(`${SERVICE}/DebitBalance`, {}, frame(debit(1n)));
    expect(r.grpcStatus).toBe(16);
    expect(await counts()).toEqual(before);
  });
});

describe("requests the short path leaves to connect get connect's answer", () => {
  it("two messages in a unary call: refused as a client error, nothing written", async () => {
    const before = await counts();
    const r = await h2.call(`${SERVICE}/DebitBalance`, auth, Buffer.concat([frame(debit(1n)), frame(debit(1n))]));
    expect(r.grpcStatus).not.toBe(0);
    expect(r.grpcStatus).not.toBe(13);
    expect(await counts()).toEqual(before);
  });

  it("a compressed-flagged message without grpc-encoding: INVALID_ARGUMENT, nothing written", async () => {
    const before = await counts();
    const r = await h2.call(`${SERVICE}/DebitBalance`, auth, frame(debit(1n), { flag: 1 }));
    expect(r.grpcStatus).toBe(3);
    expect(await counts()).toEqual(before);
  });

  it("bytes that are not the request message: INVALID_ARGUMENT, nothing written", async () => {
    const before = await counts();
    const r = await h2.call(`${SERVICE}/DebitBalance`, auth, frame(Buffer.from([0xff, 0xff, 0xff, 0xff])));
    expect(r.grpcStatus).toBe(3);
    expect(await counts()).toEqual(before);
  });

  it("a gzip-compressed request is served (by connect) and written once", async () => {
    const before = await counts();
    const r = await h2.call(`${SERVICE}/DebitBalance`, { ...auth, "grpc-encoding": "gzip" }, frame(gzipSync(debit(5n)), { flag: 1 }));
    expect(r.grpcStatus).toBe(0);
    expect(await counts()).toEqual({ cents: String(BigInt(before.cents) - 5n), transactions: String(Number(before.transactions) + 1) });
  });

  it("a malformed grpc-timeout: refused by connect, nothing written", async () => {
    const before = await counts();
    const r = await h2.call(`${SERVICE}/DebitBalance`, { ...auth, "grpc-timeout": "soon" }, frame(debit(1n)));
    expect(r.grpcStatus).not.toBe(0);
    expect(r.grpcStatus).not.toBe(13);
    expect(await counts()).toEqual(before);
  });
});

describe("deadlines longer than the server's cap", () => {
  it("are cut to REQUEST_TIMEOUT_MS and served, over gRPC and Connect, without a warning on the server's stderr", async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on("warning", onWarning);
    try {
      const before = await counts();
      const overGrpc = await h2.call(`${SERVICE}/DebitBalance`, { ...auth, "grpc-timeout": "99999999H" }, frame(debit(1n)));
      expect(overGrpc.grpcStatus).toBe(0);
      const overConnect = await fetch(`${server.baseUrl}${SERVICE}/DebitBalance`, {
        method: "POST",
        headers: { ...auth, "content-type": "application/json", "connect-protocol-version": "1", "connect-timeout-ms": "9999999999" },
        body: JSON.stringify({ id: balanceId, amountCents: "1" }),
      });
      expect(overConnect.status).toBe(200);
      expect(await counts()).toEqual({ cents: String(BigInt(before.cents) - 2n), transactions: String(Number(before.transactions) + 2) });
      // Node reports a timer past 2^31-1 ms asynchronously.
      await new Promise((r) => setImmediate(r));
    } finally {
      process.off("warning", onWarning);
    }
    expect(warnings).toEqual([]);
  });
});

describe("deadlines past a timer's range on health and reflection", () => {
  it("are still refused as too long, without a warning on the server's stderr", async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on("warning", onWarning);
    try {
      const overGrpc = await h2.call("/grpc.health.v1.Health/Check", { "grpc-timeout": "99999999H" }, frame(new Uint8Array(0)));
      expect(overGrpc.grpcStatus).toBe(3);
      const overConnect = await fetch(`${server.baseUrl}/grpc.health.v1.Health/Check`, {
        method: "POST",
        headers: { "content-type": "application/json", "connect-protocol-version": "1", "connect-timeout-ms": "9999999999" },
        body: "{}",
      });
      expect(overConnect.status).toBe(400);
      expect(((await overConnect.json()) as { code: string }).code).toBe("invalid_argument");
      const reflection = await h2.call(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        { "grpc-timeout": "99999999H" },
        frame(new Uint8Array(0)),
      );
      expect(reflection.grpcStatus).toBe(3);
      await new Promise((r) => setImmediate(r));
    } finally {
      process.off("warning", onWarning);
    }
    expect(warnings).toEqual([]);
  });
});

describe("a client that goes away", () => {
  it("a stream reset before its body ends runs nothing, and the connection's next call is served", async () => {
    const before = await counts();
    const stream = h2.session.request({ ":method": "POST", ":path": `${SERVICE}/DebitBalance`, "content-type": "application/grpc", te: "trailers", ...auth });
    stream.on("error", () => undefined);
    const whole = frame(debit(1n));
    stream.write(whole.subarray(0, 7));
    await new Promise((r) => setTimeout(r, 50));
    stream.close(8); // NGHTTP2_CANCEL
    await new Promise((r) => stream.once("close", r));
    const r = await h2.call(`${SERVICE}/DebitBalance`, auth, frame(debit(2n)));
    expect(r.grpcStatus).toBe(0);
    expect(await counts()).toEqual({ cents: String(BigInt(before.cents) - 2n), transactions: String(Number(before.transactions) + 1) });
  });
});

describe("plain unary Connect calls", () => {
  const post = (body: string, headers: Record<string, string> = {}) =>
    fetch(`${server.baseUrl}${SERVICE}/DebitBalance`, {
      method: "POST",
      headers: { "content-type": "application/json", ...auth, ...headers },
      body,
    });

  it("a JSON debit is answered with its movement (int64 as strings) and written once", async () => {
    const before = await counts();
    const r = await post(JSON.stringify({ id: balanceId, amountCents: "3" }));
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toBe("application/json");
    const body = (await r.json()) as { data: { balance: { balanceCents: string }; transaction: { amountCents: string } } };
    expect(body.data.balance.balanceCents).toBe(String(BigInt(before.cents) - 3n));
    expect(body.data.transaction.amountCents).toBe("3");
    expect(await counts()).toEqual({ cents: String(BigInt(before.cents) - 3n), transactions: String(Number(before.transactions) + 1) });
  });

  it("a refusal is connect's error JSON with the HTTP status of its code and the ErrorInfo, nothing written", async () => {
    const before = await counts();
    const r = await post(JSON.stringify({ id: balanceId, amountCents: "100000000" }));
    expect(r.status).toBe(400); // FAILED_PRECONDITION
    const body = (await r.json()) as { code: string; message: string; details?: Array<{ type: string }> };
    expect(body.code).toBe("failed_precondition");
    expect(body.details?.map((d) => d.type)).toContain("google.rpc.ErrorInfo");
    expect(await counts()).toEqual(before);
  });

  it("an unknown field is refused (strict Connect JSON, by connect), nothing written", async () => {
    const before = await counts();
    const r = await post(JSON.stringify({ id: balanceId, amountCents: "1", colour: "red" }));
    expect(r.status).toBe(400);
    expect(((await r.json()) as { code: string }).code).toBe("invalid_argument");
    expect(await counts()).toEqual(before);
  });

  it("a binary (application/proto) debit is served too", async () => {
    const before = await counts();
    const r = await fetch(`${server.baseUrl}${SERVICE}/DebitBalance`, {
      method: "POST",
      headers: { "content-type": "application/proto", ...auth },
      body: debit(2n),
    });
    expect(r.status).toBe(200);
    const movement = fromBinary(DebitBalanceResponseSchema, new Uint8Array(await r.arrayBuffer())).data!;
    expect(movement.transaction!.amountCents).toBe(2n);
    expect(await counts()).toEqual({ cents: String(BigInt(before.cents) - 2n), transactions: String(Number(before.transactions) + 1) });
  });
});

describe("HTTP/1.1 keep-alive", () => {
  it("an oversized body is refused and the connection's next request is still answered", async () => {
    const socket = net.connect(server.port, "127.0.0.1");
    await new Promise((r) => socket.once("connect", r));
    let text = "";
    socket.on("data", (c: Buffer) => (text += c.toString("latin1")));
    const big = JSON.stringify({ id: balanceId, amountCents: "1", description: "x".repeat(3 * server.config.maxRequestBytes) });
    const head = (extra: string) =>
      `POST ${SERVICE}/DebitBalance HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: ${auth.authorization}\r\n${extra}\r\n`;
    socket.write(`${head(`Content-Length: ${big.length}\r\n`)}${big}`);
    const small = JSON.stringify({ id: balanceId, amountCents: "0" });
    socket.write(`${head(`Content-Length: ${small.length}\r\n`)}${small}`);
    const started = Date.now();
    while ((text.match(/HTTP\/1\.1 /g) ?? []).length < 2 && Date.now() - started < 5000) await new Promise((r) => setTimeout(r, 20));
    socket.destroy();
    const statuses = [...text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1]));
    expect(statuses[0]).toBeGreaterThanOrEqual(400);
    expect(statuses[0]).toBeLessThan(500);
    // The second request (amount 0) is answered: a validation refusal, not silence.
    expect(statuses.length === 2 ? statuses[1] : "connection closed").toBe(400);
  });
});
