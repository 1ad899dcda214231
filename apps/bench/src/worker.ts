import http2 from "node:http2";
import net from "node:net";
import { randomUUID } from "node:crypto";
import { performance } from "node:perf_hooks";
import type pg from "pg";
import type * as grpcTypes from "@grpc/grpc-js";
import { create, toBinary, type DescMessage } from "@bufbuild/protobuf";
import {
  CreditBalanceRequestSchema,
  DebitBalanceRequestSchema,
  GetBalanceRequestSchema,
  GetMyTotalBalanceRequestSchema,
  ListBalanceTransactionsRequestSchema,
} from "@account-balance/proto/accountbalance/v1/account_balance_service_pb.js";
import type { Scenario } from "./options.js";
import { authHeaders, connectJson, opSource, restRequest, SERVICE, type Op, type Target } from "./ops.js";
import { summarize, type LatencySummary } from "./stats.js";
import { encodeHeaderBlock, H2Connection } from "./h2-raw.js";

/**
 * The load process (child_process.fork): drives one scenario with `concurrency` closed
 * loops for the given time and reports throughput, latencies and its own CPU. It runs apart
 * from the bench's main process so that its CPU can be told apart from the server's.
 */

export type NodeClient = "grpc-js" | "grpc-h2" | "grpc-raw" | "connect" | "rest" | "baseline";

export interface RunSpec {
  client: NodeClient;
  scenario: Scenario;
  concurrency: number;
  durationMs: number;
  warmupMs: number;
  target: Target;
  /** The baseline's pool size (the server's DB_POOL_MAX). */
  poolMax: number;
}

export interface RunResult {
  ok: number;
  errors: number;
  /** A few distinct error messages, for the report. */
  errorSamples: string[];
  elapsedSec: number;
  latency: LatencySummary;
  clientCpuSec: number;
}

type Call = (op: Op) => Promise<void>;

interface Driver {
  call: Call;
  close(): Promise<void>;
}

const SCHEMAS: Record<Op["rpc"], DescMessage> = {
  DebitBalance: DebitBalanceRequestSchema,
  CreditBalance: CreditBalanceRequestSchema,
  GetBalance: GetBalanceRequestSchema,
  ListBalanceTransactions: ListBalanceTransactionsRequestSchema,
  GetMyTotalBalance: GetMyTotalBalanceRequestSchema,
};

/** The request message in protobuf binary. */
export function protoBytes(op: Op): Uint8Array {
  const schema = SCHEMAS[op.rpc];
  switch (op.rpc) {
    case "DebitBalance":
    case "CreditBalance":
      return toBinary(schema, create(schema, { id: op.id, amountCents: 1n, ...(op.key ? { idempotencyKey: op.key } : {}) } as never));
    case "GetBalance":
      return toBinary(schema, create(schema, { id: op.id } as never));
    case "ListBalanceTransactions":
      return toBinary(schema, create(schema, { id: op.id, limit: op.limit } as never));
    case "GetMyTotalBalance":
      return toBinary(schema, create(schema, {} as never));
  }
}

/** gRPC length-prefixed message: flag byte 0 (uncompressed), 4-byte big-endian length, bytes. */
export function grpcFrame(bytes: Uint8Array): Buffer {
  const frame = Buffer.alloc(5 + bytes.length);
  frame.writeUInt32BE(bytes.length, 1);
  frame.set(bytes, 5);
  return frame;
}

/**
 * grpcFrame(protoBytes(op)) with the same bytes, written directly. @bufbuild's reflective
 * encoder costs 10-15 µs per call in a load process (at ~1,000 calls/s most of it never gets
 * optimised), a quarter of grpc-raw's whole budget. Field numbers come from the schemas, and
 * a test holds the bytes equal to protoBytes'.
 */
export function grpcFrameDirect(op: Op): Buffer {
  // [field number, string | varint], in field-number order as protoBytes writes them.
  const fields: Array<[number, string | number]> = [];
  const schema = SCHEMAS[op.rpc];
  switch (op.rpc) {
    case "DebitBalance":
    case "CreditBalance":
      fields.push([fieldNumber(schema, "id"), op.id], [fieldNumber(schema, "amountCents"), 1]);
      if (op.key) fields.push([fieldNumber(schema, "idempotencyKey"), op.key]);
      break;
    case "GetBalance":
      fields.push([fieldNumber(schema, "id"), op.id]);
      break;
    case "ListBalanceTransactions":
      fields.push([fieldNumber(schema, "id"), op.id], [fieldNumber(schema, "limit"), op.limit]);
      break;
    case "GetMyTotalBalance":
      break;
  }
  let size = 0;
  for (const [, v] of fields) {
    size += 1 + (typeof v === "string" ? varintSize(Buffer.byteLength(v)) + Buffer.byteLength(v) : varintSize(v));
  }
  const buf = Buffer.allocUnsafe(5 + size);
  buf[0] = 0; // uncompressed
  buf.writeUInt32BE(size, 1);
  let off = 5;
  for (const [n, v] of fields) {
    if (typeof v === "string") {
      buf[off++] = (n << 3) | 2; // length-delimited (fields 1-15: one tag byte)
      const len = Buffer.byteLength(v);
      off = writeVarint(buf, off, len);
      off += buf.write(v, off);
    } else {
      buf[off++] = n << 3; // varint
      off = writeVarint(buf, off, v);
    }
  }
  return buf;
}

function fieldNumber(schema: DescMessage, localName: string): number {
  const field = schema.field[localName];
  if (!field || field.number > 15) throw new Error(`${schema.typeName}.${localName}: not a field with a one-byte tag`);
  return field.number;
}

function varintSize(v: number): number {
  let n = 1;
  for (; v >= 0x80; v >>>= 7) n++;
  return n;
}

function writeVarint(buf: Buffer, off: number, v: number): number {
  while (v >= 0x80) {
    buf[off++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  buf[off++] = v;
  return off;
}

// grpc-js and pg load only in the load processes that use them: each run is a fresh process.
async function grpcJsDriver(target: Target): Promise<Driver> {
  const grpc: typeof grpcTypes = await import("@grpc/grpc-js");
  const url = new URL(target.baseUrl);
  const client = new grpc.Client(`${url.hostname}:${url.port}`, grpc.credentials.createInsecure());
  const serialize = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  const deserialize = (b: Buffer) => b;
  return {
    call: (op) =>
      new Promise((resolve, reject) => {
        const md = new grpc.Metadata();
        for (const [k, v] of Object.entries(authHeaders(op, target))) md.set(k, v);
        client.makeUnaryRequest(`/${SERVICE}/${op.rpc}`, serialize, deserialize, protoBytes(op), md, (err) =>
          err ? reject(new Error(`grpc ${grpc.status[err.code]}: ${err.details}`)) : resolve(),
        );
      }),
    close: async () => client.close(),
  };
}

/** A minimal gRPC client on node:http2: one connection, one stream per call, no decoding. */
function grpcH2Driver(target: Target): Driver {
  // TCP_NODELAY: a call is two writes (HEADERS, then DATA); with Nagle the second waits for
  // the server's delayed ACK, which adds ~40 ms to every call.
  const url = new URL(target.baseUrl);
  const session = http2.connect(target.baseUrl, {
    createConnection: () => net.connect({ host: url.hostname, port: Number(url.port), noDelay: true }),
  });
  session.on("error", () => undefined);
  return {
    call: (op) =>
      new Promise((resolve, reject) => {
        const stream = session.request({
          ":method": "POST",
          ":path": `/${SERVICE}/${op.rpc}`,
          "content-type": "application/grpc",
          te: "trailers",
          ...authHeaders(op, target),
        });
        let status: string | undefined;
        stream.on("response", (headers) => {
          if (headers["grpc-status"] !== undefined) status = String(headers["grpc-status"]);
        });
        stream.on("trailers", (trailers) => {
          if (trailers["grpc-status"] !== undefined) status = String(trailers["grpc-status"]);
        });
        stream.on("data", () => undefined);
        stream.on("error", reject);
        stream.on("close", () => (status === "0" ? resolve() : reject(new Error(`grpc-status ${status ?? "missing"}`))));
        stream.end(grpcFrame(protoBytes(op)));
      }),
    close: async () => {
      await new Promise<void>((r) => session.close(() => r()));
    },
  };
}

/**
 * gRPC on hand-written HTTP/2 frames (h2-raw.ts): a fraction of grpc-h2's CPU per call, so
 * more of the shared cores is left to the server. It cannot read grpc-status (no HPACK
 * decoding); see H2Connection.request for what it checks instead.
 */
function grpcRawDriver(target: Target): Driver {
  const url = new URL(target.baseUrl);
  const conn = new H2Connection(url.hostname, Number(url.port));
  // The headers depend only on the RPC (path and credentials): encoded once per RPC.
  const blocks = new Map<Op["rpc"], Buffer>();
  const headerBlock = (op: Op) => {
    let block = blocks.get(op.rpc);
    if (!block) {
      block = encodeHeaderBlock([
        [":method", "POST"],
        [":scheme", "http"],
        [":path", `/${SERVICE}/${op.rpc}`],
        [":authority", url.host],
        ["content-type", "application/grpc"],
        ["te", "trailers"],
        ...Object.entries(authHeaders(op, target)),
      ]);
      blocks.set(op.rpc, block);
    }
    return block;
  };
  return {
    call: (op) => conn.request(headerBlock(op), grpcFrameDirect(op)),
    close: () => conn.close(),
  };
}

/** Connect JSON over HTTP/1.1 with fetch (undici, keep-alive). */
function connectDriver(target: Target): Driver {
  return {
    call: async (op) => {
      const res = await fetch(`${target.baseUrl}/${SERVICE}/${op.rpc}`, {
        method: "POST",
        headers: { "content-type": "application/json", ...authHeaders(op, target) },
        body: connectJson(op),
      });
      const text = await res.text();
      if (res.status !== 200) throw new Error(`connect HTTP ${res.status}: ${text.slice(0, 200)}`);
    },
    close: async () => undefined,
  };
}

function restDriver(target: Target): Driver {
  return {
    call: async (op) => {
      const r = restRequest(op, target.restBase);
      const res = await fetch(`${target.baseUrl}${r.path}`, {
        method: r.method,
        headers: { ...r.headers, ...authHeaders(op, target) },
        ...(r.body !== undefined ? { body: r.body } : {}),
      });
      const text = await res.text();
      if (res.status !== 200 && res.status !== 201) throw new Error(`rest HTTP ${res.status}: ${text.slice(0, 200)}`);
    },
    close: async () => undefined,
  };
}

/**
 * The baseline: the same SQL work straight through `pg`, one database transaction per
 * operation, with the connection budget the server has.
 */
async function baselineDriver(target: Target, concurrency: number, poolMax: number): Promise<Driver> {
  const { default: pgModule } = await import("pg");
  const pool = new pgModule.Pool({ connectionString: target.databaseUrl, max: Math.min(concurrency, poolMax) });
  pool.on("error", () => undefined);
  const sessionId = target.session;
  const move = async (op: Extract<Op, { rpc: "DebitBalance" | "CreditBalance" }>) => {
    const c = await pool.connect();
    try {
      await c.query("begin");
      if (op.key) {
        await c.query(
          `insert into idempotency_keys (scope, key, fingerprint, operation, status, created_at, expires_at)
           values ('service', $1, $2, $3, 'in_flight', now(), now() + make_interval(secs => 86400))
           on conflict (scope, key) do update set status = 'in_flight' where idempotency_keys.expires_at <= now()
           returning 1 as claimed`,
          [op.key, "baseline", op.rpc === "DebitBalance" ? "debit" : "credit"],
        );
      }
      const delta = op.rpc === "DebitBalance" ? -1 : 1;
      const u = await c.query<{ balance_cents: string; last_sequence: string; currency: string; updated_at: Date }>(
        `update account_balances
            set balance_cents = balance_cents + $2, version = version + 1, last_sequence = last_sequence + 1,
                updated_at = greatest(date_trunc('milliseconds', clock_timestamp()), updated_at)
          where id = $1 and status = 'active' and balance_cents + $2 >= 0
          returning balance_cents, last_sequence, currency, updated_at`,
        [op.id, delta],
      );
      const row = u.rows[0];
      if (!row) throw new Error("baseline: balance not found or too low");
      const after = BigInt(row.balance_cents);
      await c.query(
        `insert into account_transactions (id, account_balance_id, transaction_type, amount_cents, balance_before_cents,
                balance_after_cents, currency, status, metadata, created_at, sequence)
         values ($1, $2, $3, 1, $4, $5, $6, 'completed', '{}'::jsonb, $7, $8)`,
        [
          `txn_${randomUUID().replace(/-/g, "").slice(0, 26).toUpperCase()}`,
          op.id,
          op.rpc === "DebitBalance" ? "debit" : "credit",
          (after - BigInt(delta)).toString(),
          after.toString(),
          row.currency,
          row.updated_at,
          row.last_sequence,
        ],
      );
      if (op.key) {
        await c.query(`update idempotency_keys set status = 'done', response = $2::jsonb where scope = 'service' and key = $1`, [
          op.key,
          JSON.stringify({ balance: row }),
        ]);
      }
      await c.query("commit");
    } catch (err) {
      await c.query("rollback").catch(() => undefined);
      throw err;
    } finally {
      c.release();
    }
  };
  const snapshot = async (fn: (c: pg.PoolClient) => Promise<void>) => {
    const c = await pool.connect();
    try {
      await c.query("begin isolation level repeatable read read only");
      await fn(c);
      await c.query("commit");
    } catch (err) {
      await c.query("rollback").catch(() => undefined);
      throw err;
    } finally {
      c.release();
    }
  };
  return {
    call: async (op) => {
      switch (op.rpc) {
        case "DebitBalance":
        case "CreditBalance":
          return move(op);
        case "GetBalance": {
          const r = await pool.query("select * from account_balances where id = $1", [op.id]);
          if (r.rowCount !== 1) throw new Error("baseline: balance not found");
          return;
        }
        case "ListBalanceTransactions":
          // The total and the page in one snapshot, as the ledger reads them: an unfiltered
          // history's total is the balance's last_sequence (the chain numbers it 1..n).
          return snapshot(async (c) => {
            const b = await c.query(`select last_sequence from account_balances where id = $1`, [op.id]);
            if (b.rowCount !== 1) throw new Error("baseline: balance not found");
            await c.query(
              `select * from account_transactions where account_balance_id = $1
                order by created_at desc, sequence desc limit $2 offset 0`,
              [op.id, op.limit],
            );
          });
        case "GetMyTotalBalance": {
          const s = await pool.query<{ user_id: string }>(
            `select user_id from sessions where id = encode(sha256(convert_to($1, 'UTF8')), 'hex')
               and revoked_at is null and expires_at > now()`,
            [sessionId],
          );
          const userId = s.rows[0]?.user_id;
          if (!userId) throw new Error("baseline: session not found");
          return snapshot(async (c) => {
            await c.query(
              `select currency, balance_type, sum(balance_cents)::text as total, count(*)::text as n
                 from account_balances
                where user_id = $1 and status = 'active' and (expires_at is null or expires_at > now())
                group by currency, balance_type`,
              [userId],
            );
          });
        }
      }
    },
    close: () => pool.end(),
  };
}

function driverFor(spec: RunSpec): Driver | Promise<Driver> {
  switch (spec.client) {
    case "grpc-js":
      return grpcJsDriver(spec.target);
    case "grpc-h2":
      return grpcH2Driver(spec.target);
    case "grpc-raw":
      return grpcRawDriver(spec.target);
    case "connect":
      return connectDriver(spec.target);
    case "rest":
      return restDriver(spec.target);
    case "baseline":
      return baselineDriver(spec.target, spec.concurrency, spec.poolMax);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function runLoad(spec: RunSpec): Promise<RunResult> {
  const driver = await driverFor(spec);
  const next = opSource(spec.scenario, spec.target);
  const latencies: number[] = [];
  const errorSamples = new Set<string>();
  let measuring = false;
  let stopping = false;
  let ok = 0;
  let errors = 0;

  const loop = async () => {
    while (!stopping) {
      const op = next();
      const t0 = performance.now();
      let failed = false;
      try {
        await driver.call(op);
      } catch (err) {
        failed = true;
        if (measuring && errorSamples.size < 3) errorSamples.add(err instanceof Error ? err.message : String(err));
      }
      if (!measuring) continue;
      latencies.push(performance.now() - t0);
      if (failed) errors++;
      else ok++;
    }
  };
  const loops = Array.from({ length: spec.concurrency }, loop);
  await sleep(spec.warmupMs);
  measuring = true;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await sleep(spec.durationMs);
  measuring = false;
  const elapsedSec = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  stopping = true;
  await Promise.all(loops);
  await driver.close().catch(() => undefined);
  return {
    ok,
    errors,
    errorSamples: [...errorSamples],
    elapsedSec,
    latency: summarize(latencies),
    clientCpuSec: (cpu.user + cpu.system) / 1e6,
  };
}
