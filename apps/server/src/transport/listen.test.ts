import net from "node:net";
import http2 from "node:http2";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { listen, type Listening, type NodeRequest, type NodeResponse } from "./listen.js";
import { registerHealth, type HealthStatus } from "./health.js";

const THIRD_PARTY = fileURLToPath(new URL("../../../../packages/proto/third_party/", import.meta.url));

type HealthClient = grpc.Client & {
  check(req: { service: string }, cb: (err: grpc.ServiceError | null, res?: { status: string }) => void): grpc.ClientUnaryCall;
};

function healthClient(port: number): HealthClient {
  const def = protoLoader.loadSync("grpc/health/v1/health.proto", { includeDirs: [THIRD_PARTY], enums: String });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    grpc: { health: { v1: { Health: new (addr: string, creds: grpc.ChannelCredentials) => HealthClient } } };
  };
  return new pkg.grpc.health.v1.Health(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
}

function grpcCheck(client: HealthClient, service: string): Promise<string> {
  return new Promise((resolve, reject) =>
    client.check({ service }, (err, res) => (err ? reject(err) : resolve(res!.status))),
  );
}

const open: Listening[] = [];
const clients: grpc.Client[] = [];
afterEach(async () => {
  clients.splice(0).forEach((c) => c.close());
  await Promise.all(open.splice(0).map((s) => s.close(0)));
});

/** A Connect handler with Health, plus /slow (answers after `slowMs`) for drain tests. */
async function serve(opts: { check?: (s: string) => Promise<HealthStatus>; slowMs?: number; headersTimeoutMs?: number } = {}) {
  const arrived: Array<() => void> = [];
  const connect = connectNodeAdapter({
    routes: (r: ConnectRouter) => registerHealth(r, opts.check ?? (async () => "SERVING"), { pollMs: 20 }),
    readMaxBytes: 1024 * 1024,
    grpc: true,
    grpcWeb: true,
    connect: true,
    requireConnectProtocolHeader: false,
  });
  const handler = (req: NodeRequest, res: NodeResponse) => {
    if (req.url === "/slow") {
      arrived.shift()?.();
      setTimeout(() => res.end(`done over ${req.httpVersion}`), opts.slowMs ?? 300);
      return;
    }
    connect(req, res);
  };
  const server = await listen({ port: 0, host: "127.0.0.1", handler, headersTimeoutMs: opts.headersTimeoutMs });
  open.push(server);
  const requestArrived = () => new Promise<void>((resolve) => arrived.push(resolve));
  return { server, requestArrived };
}

function h2Get(port: number, path: string): Promise<{ status: number; body: string; session: http2.ClientHttp2Session }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on("error", reject);
    const stream = session.request({ ":path": path });
    let status = 0;
    let body = "";
    stream.on("response", (h) => (status = Number(h[":status"])));
    stream.setEncoding("utf8");
    stream.on("data", (d: string) => (body += d));
    stream.on("end", () => resolve({ status, body, session }));
    stream.on("error", reject);
  });
}

/** Resolves with what the server sent back before closing the connection. */
function rawExchange(port: number, send: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1", () => socket.write(send));
    let got = "";
    socket.on("data", (d) => (got += d.toString("latin1")));
    socket.on("close", () => resolve(got));
    socket.on("error", reject);
  });
}

describe("listen: HTTP/1.1 and h2c on one port", () => {
  it("serves gRPC (h2c) and Connect JSON (HTTP/1.1) from the same port", async () => {
    const { server } = await serve();
    const client = healthClient(server.port);
    clients.push(client);
    expect(await grpcCheck(client, "")).toBe("SERVING");

    const res = await fetch(`http://127.0.0.1:${server.port}/grpc.health.v1.Health/Check`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ service: "" }),
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: "SERVING" });
  });

  it("tells the protocols apart by the connection preface", async () => {
    const { server } = await serve({ slowMs: 1 });
    const viaH1 = await fetch(`http://127.0.0.1:${server.port}/slow`);
    expect(await viaH1.text()).toBe("done over 1.1");
    const viaH2 = await h2Get(server.port, "/slow");
    viaH2.session.close();
    expect(viaH2).toMatchObject({ status: 200, body: "done over 2.0" });
  });

  it("serves a client that sends the preface a few bytes at a time", async () => {
    const { server } = await serve({ slowMs: 1 });
    const session = http2.connect(`http://127.0.0.1:${server.port}`, {
      createConnection: () => {
        const socket = net.connect(server.port, "127.0.0.1");
        // Split every write into tiny chunks so the preface arrives in pieces.
        const write = socket.write.bind(socket) as (chunk: Buffer, cb?: () => void) => boolean;
        socket.write = ((chunk: Buffer | string, ...rest: unknown[]) => {
          const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
          for (let i = 0; i < buf.length; i += 5) write(buf.subarray(i, i + 5));
          const cb = rest.find((r) => typeof r === "function") as (() => void) | undefined;
          cb?.();
          return true;
        }) as typeof socket.write;
        socket.setNoDelay(true);
        return socket;
      },
    });
    const body = await new Promise<string>((resolve, reject) => {
      const s = session.request({ ":path": "/slow" });
      let b = "";
      s.setEncoding("utf8");
      s.on("data", (d: string) => (b += d));
      s.on("end", () => resolve(b));
      s.on("error", reject);
    });
    session.close();
    expect(body).toBe("done over 2.0");
  });

  it("answers a malformed HTTP/1 request with 400, not a crash", async () => {
    const { server } = await serve();
    const reply = await rawExchange(server.port, "GARBAGE\r\n\r\n");
    expect(reply.startsWith("HTTP/1.1 400")).toBe(true);
    const res = await fetch(`http://127.0.0.1:${server.port}/slow`);
    expect(res.status).toBe(200);
  });

  it("drops a client that sends headers too slowly (slowloris)", async () => {
    const { server } = await serve({ headersTimeoutMs: 200 });
    const started = Date.now();
    const reply = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(server.port, "127.0.0.1", () => socket.write("GET /slow HTTP/1.1\r\nHost: x\r\n"));
      let got = "";
      socket.on("data", (d) => (got += d.toString("latin1")));
      socket.on("close", () => resolve(got));
      socket.on("error", reject);
    });
    expect(Date.now() - started).toBeLessThan(3000);
    expect(reply).toMatch(/^HTTP\/1\.1 408/);
  });

  it("drops a connection that says nothing", async () => {
    const { server } = await serve({ headersTimeoutMs: 200 });
    const started = Date.now();
    expect(await rawExchange(server.port, "")).toBe("");
    expect(Date.now() - started).toBeLessThan(3000);
  });
});

describe("listen: an address it cannot take", () => {
  it("names HOST and PORT and the reason", async () => {
    const first = await listen({ port: 0, host: "127.0.0.1", handler: (_req, res) => res.end() });
    try {
      const err = await listen({ port: first.port, host: "127.0.0.1", handler: (_req, res) => res.end() }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect((err as Error).message).toBe(`cannot listen on HOST 127.0.0.1 PORT ${first.port}: EADDRINUSE`);
    } finally {
      await first.close(0);
    }
  });
});

describe("listen: close(grace)", () => {
  it("lets an in-flight HTTP/1.1 request finish, then stops accepting", async () => {
    const { server, requestArrived } = await serve({ slowMs: 300 });
    const arrived = requestArrived();
    const pending = fetch(`http://127.0.0.1:${server.port}/slow`).then(async (r) => [r.status, await r.text()]);
    await arrived;
    const started = Date.now();
    await server.close(5000);
    expect(await pending).toEqual([200, "done over 1.1"]);
    expect(Date.now() - started).toBeLessThan(2000);
    await expect(fetch(`http://127.0.0.1:${server.port}/slow`)).rejects.toThrow();
  });

  it("lets an in-flight gRPC call finish (GOAWAY, then the stream completes)", async () => {
    let release!: () => void;
    const entered = new Promise<void>((r) => (release = r));
    const { server } = await serve({
      check: async () => {
        release();
        await new Promise((r) => setTimeout(r, 300));
        return "SERVING";
      },
    });
    const client = healthClient(server.port);
    clients.push(client);
    const pending = grpcCheck(client, "");
    await entered;
    await server.close(5000);
    expect(await pending).toBe("SERVING");
  });

  it("closes idle keep-alive connections at once instead of waiting for the grace period", async () => {
    const { server } = await serve({ slowMs: 1 });
    // fetch keeps the connection alive; an h2 session stays open too.
    expect((await fetch(`http://127.0.0.1:${server.port}/slow`)).status).toBe(200);
    const h2 = await h2Get(server.port, "/slow");
    const started = Date.now();
    await server.close(10_000);
    expect(Date.now() - started).toBeLessThan(1000);
    expect(h2.session.closed || h2.session.destroyed).toBe(true);
  });

  it("cuts what is still running when the grace period ends", async () => {
    const { server, requestArrived } = await serve({ slowMs: 60_000 });
    const arrived = requestArrived();
    const pending = fetch(`http://127.0.0.1:${server.port}/slow`).then(
      () => "answered",
      () => "cut",
    );
    await arrived;
    const started = Date.now();
    await server.close(200);
    const took = Date.now() - started;
    expect(took).toBeGreaterThanOrEqual(190);
    expect(took).toBeLessThan(1500);
    expect(await pending).toBe("cut");
  });
});
