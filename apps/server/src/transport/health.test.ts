import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { listen, type Listening } from "./listen.js";
import { registerHealth, type HealthStatus } from "./health.js";

const THIRD_PARTY = fileURLToPath(new URL("../../../../packages/proto/third_party/", import.meta.url));

interface HealthClient extends grpc.Client {
  check(req: { service: string }, cb: (err: grpc.ServiceError | null, res?: { status: string }) => void): grpc.ClientUnaryCall;
  watch(req: { service: string }): grpc.ClientReadableStream<{ status: string }>;
  list(req: object, cb: (err: grpc.ServiceError | null, res?: { statuses: Record<string, { status: string }> }) => void): grpc.ClientUnaryCall;
}

const open: Listening[] = [];
const clients: grpc.Client[] = [];
afterEach(async () => {
  clients.splice(0).forEach((c) => c.close());
  await Promise.all(open.splice(0).map((s) => s.close(0)));
});

/** Health over a mutable status table; counts how often the check runs. */
async function start(services: readonly string[] = []) {
  const statuses = new Map<string, HealthStatus>([["", "SERVING"]]);
  let calls = 0;
  const asked: Array<{ watching: boolean }> = [];
  const check = async (service: string, how: { watching: boolean }): Promise<HealthStatus> => {
    calls++;
    asked.push(how);
    if (service === "boom") throw new Error("database password is hunter2");
    return statuses.get(service) ?? "SERVICE_UNKNOWN";
  };
  const handler = connectNodeAdapter({
    routes: (r: ConnectRouter) => registerHealth(r, check, { pollMs: 20, services }),
    readMaxBytes: 64 * 1024,
    grpc: true,
    grpcWeb: true,
    connect: true,
    requireConnectProtocolHeader: false,
  });
  const server = await listen({ port: 0, host: "127.0.0.1", handler });
  open.push(server);
  const def = protoLoader.loadSync("grpc/health/v1/health.proto", { includeDirs: [THIRD_PARTY], enums: String });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    grpc: { health: { v1: { Health: new (addr: string, creds: grpc.ChannelCredentials) => HealthClient } } };
  };
  const client = new pkg.grpc.health.v1.Health(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
  clients.push(client);
  return { server, client, statuses, calls: () => calls, asked };
}

function check(client: HealthClient, service: string): Promise<string> {
  return new Promise((resolve, reject) => client.check({ service }, (err, res) => (err ? reject(err) : resolve(res!.status))));
}

/** Collects Watch messages; `next()` waits for the next one. */
function watch(client: HealthClient, service: string) {
  const call = client.watch({ service });
  const queue: string[] = [];
  const waiting: Array<(s: string) => void> = [];
  let ended: string | undefined;
  call.on("data", (m: { status: string }) => {
    const w = waiting.shift();
    if (w) w(m.status);
    else queue.push(m.status);
  });
  call.on("error", (e: grpc.ServiceError) => (ended = grpc.status[e.code]));
  call.on("end", () => (ended ??= "END"));
  return {
    call,
    next: () => (queue.length > 0 ? Promise.resolve(queue.shift()!) : new Promise<string>((r) => waiting.push(r))),
    queued: () => [...queue],
    ended: () => ended,
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("grpc.health.v1.Health", () => {
  it("Check answers the status of the server and of a known service", async () => {
    const { client, statuses } = await start();
    statuses.set("accountbalance.v1.AccountBalanceService", "NOT_SERVING");
    expect(await check(client, "")).toBe("SERVING");
    expect(await check(client, "accountbalance.v1.AccountBalanceService")).toBe("NOT_SERVING");
  });

  it("tells the check who asks: Check a fresh answer, a Watch poll one that may be shared (app.ts reuses it for a second)", async () => {
    const { client, asked } = await start();
    expect(await check(client, "")).toBe("SERVING");
    expect(asked).toEqual([{ watching: false }]);
    const w = watch(client, "");
    expect(await w.next()).toBe("SERVING");
    w.call.cancel();
    expect(asked.slice(1).every((a) => a.watching)).toBe(true);
    expect(asked.length).toBeGreaterThan(1);
  });

  it("Check on an unknown service fails with NOT_FOUND", async () => {
    const { client } = await start();
    await expect(check(client, "no.such.Service")).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
  });

  it("Check reports NOT_SERVING when the check itself fails, without its error", async () => {
    const { client, server } = await start();
    expect(await check(client, "boom")).toBe("NOT_SERVING");
    const res = await fetch(`http://127.0.0.1:${server.port}/grpc.health.v1.Health/Check`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ service: "boom" }),
    });
    const text = await res.text();
    expect(JSON.parse(text)).toEqual({ status: "NOT_SERVING" });
    expect(text).not.toContain("hunter2");
  });

  it("Check over Connect JSON: unknown service is 404 not_found", async () => {
    const { server } = await start();
    const res = await fetch(`http://127.0.0.1:${server.port}/grpc.health.v1.Health/Check`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ service: "nope" }),
    });
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ code: "not_found" });
  });

  it("Watch sends the current status, then each change, and stops polling when the client leaves", async () => {
    const { client, statuses, calls } = await start();
    const w = watch(client, "");
    expect(await w.next()).toBe("SERVING");
    statuses.set("", "NOT_SERVING");
    expect(await w.next()).toBe("NOT_SERVING");
    statuses.set("", "SERVING");
    expect(await w.next()).toBe("SERVING");
    // No change, no message.
    await sleep(100);
    expect(w.queued()).toEqual([]);

    w.call.cancel();
    await sleep(100);
    const after = calls();
    await sleep(150);
    expect(calls()).toBe(after);
    expect(w.ended()).toBe("CANCELLED");
  });

  it("Watch on an unknown service says SERVICE_UNKNOWN and keeps the call open until it is known", async () => {
    const { client, statuses } = await start();
    const w = watch(client, "later.Service");
    expect(await w.next()).toBe("SERVICE_UNKNOWN");
    await sleep(60);
    expect(w.ended()).toBeUndefined();
    statuses.set("later.Service", "SERVING");
    expect(await w.next()).toBe("SERVING");
    w.call.cancel();
  });

  it("Watch works over Connect (server streaming on HTTP/1.1)", async () => {
    const { server, statuses } = await start();
    const abort = new AbortController();
    const res = await fetch(`http://127.0.0.1:${server.port}/grpc.health.v1.Health/Watch`, {
      method: "POST",
      headers: { "content-type": "application/connect+json" },
      body: envelope(JSON.stringify({ service: "" })),
      signal: abort.signal,
    });
    expect(res.status).toBe(200);
    const messages = envelopes(res.body!);
    expect(await messages.next()).toEqual({ done: false, value: { status: "SERVING" } });
    statuses.set("", "NOT_SERVING");
    expect(await messages.next()).toEqual({ done: false, value: { status: "NOT_SERVING" } });
    abort.abort();
  });

  it("List reports the server and the known services", async () => {
    const { client, statuses } = await start(["a.A", "b.B"]);
    statuses.set("a.A", "NOT_SERVING");
    const res = await new Promise<{ statuses: Record<string, { status: string }> }>((resolve, reject) =>
      client.list({}, (err, r) => (err ? reject(err) : resolve(r!))),
    );
    // b.B is unknown to the check, so it is left out.
    expect(res.statuses).toEqual({ "": { status: "SERVING" }, "a.A": { status: "NOT_SERVING" } });
  });
});

function envelope(json: string): Uint8Array<ArrayBuffer> {
  const data = Buffer.from(json);
  const head = Buffer.alloc(5);
  head.writeUInt32BE(data.length, 1);
  return new Uint8Array(Buffer.concat([head, data]));
}

/** Reads Connect streaming envelopes (flags, 4-byte length, JSON) however the bytes are chunked. */
async function* envelopes(body: ReadableStream<Uint8Array>): AsyncGenerator<unknown> {
  let buf = Buffer.alloc(0);
  for await (const chunk of body) {
    buf = Buffer.concat([buf, chunk]);
    while (buf.length >= 5 && buf.length >= 5 + buf.readUInt32BE(1)) {
      const len = buf.readUInt32BE(1);
      yield JSON.parse(buf.subarray(5, 5 + len).toString());
      buf = buf.subarray(5 + len);
    }
  }
}
