import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import { restCallKey } from "@account-balance/connect-rest";
import { LedgerError, type Ledger, type Movements } from "@account-balance/ledger";
import { bearerTokenOf } from "./auth/session-id.js";
import { createServiceTokens } from "./auth/service-tokens.js";
import type { NodeRequest, NodeResponse } from "./transport/listen.js";

/**
 * Prometheus metrics (prom-client), served on GET /metrics. Everything is labelled with
 * low-cardinality values only: method names, protocols, status codes, movement types and
 * refusal reasons — never ids, users or amounts.
 */

export type Protocol = "grpc" | "grpc-web" | "connect" | "rest";

/** The numbers a connection pool can tell (tarn, under knex, under MikroORM). */
export interface PoolStats {
  used: number;
  free: number;
  pending: number;
  max: number;
}

export interface Metrics {
  readonly registry: Registry;
  /** Counts and times every RPC; place it outside the errors interceptor so it sees final codes. */
  readonly interceptor: Interceptor;
  /** Answers GET/HEAD /metrics; false for any other request. */
  readonly handler: (req: NodeRequest, res: NodeResponse) => boolean;
  /** One credit or debit and how it ended: "applied", "replayed" or the refusal's reason (lowercase). */
  recordMovement(type: "credit" | "debit", outcome: string): void;
  /** Size of one group-committed batch of movements (when the ledger batches). */
  recordBatch(size: number): void;
  /** Where the DB pool gauges read from (sampled on each scrape). */
  watchPool(read: () => PoolStats | undefined): void;
}

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256];

export interface MetricsOptions {
  /** When set, GET /metrics needs `Authorization: Bearer <token>` (METRICS_TOKEN). */
  token?: string;
}

export function createMetrics(opts: MetricsOptions = {}): Metrics {
  const registry = new Registry();
  // Same constant-time match as the service tokens; not one of them (a scraper gets no rights).
  const scraper = opts.token === undefined ? undefined : createServiceTokens([opts.token]);
  collectDefaultMetrics({ register: registry });

  const rpcLabels = ["service", "method", "protocol", "code"] as const;
  const rpcTotal = new Counter({
    name: "account_balance_rpc_requests_total",
    help: "RPCs handled, by method, protocol and final status code",
    labelNames: rpcLabels,
    registers: [registry],
  });
  const rpcSeconds = new Histogram({
    name: "account_balance_rpc_duration_seconds",
    help: "Time from the call entering the interceptor chain to its response or error",
    labelNames: rpcLabels,
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const movements = new Counter({
    name: "account_balance_ledger_movements_total",
    help: "Credits and debits by outcome: applied, replayed (idempotency key) or the refusal reason",
    labelNames: ["type", "outcome"] as const,
    registers: [registry],
  });
  const batches = new Histogram({
    name: "account_balance_ledger_batch_size",
    help: "Movements committed together in one database transaction (group commit)",
    buckets: BATCH_BUCKETS,
    registers: [registry],
  });

  let readPool: (() => PoolStats | undefined) | undefined;
  const poolGauge = (name: string, help: string, pick: (s: PoolStats) => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        const stats = readPool?.();
        this.set(stats ? pick(stats) : 0);
      },
    });
  poolGauge("account_balance_db_pool_used", "Database connections in use", (s) => s.used);
  poolGauge("account_balance_db_pool_free", "Idle database connections", (s) => s.free);
  poolGauge("account_balance_db_pool_pending_acquires", "Callers waiting for a database connection", (s) => s.pending);
  poolGauge("account_balance_db_pool_max", "Largest size of the database pool", (s) => s.max);

  const interceptor: Interceptor = (next) => async (req) => {
    const start = process.hrtime.bigint();
    const labels = {
      service: shortService(req.service.typeName),
      method: req.method.name,
      protocol: protocolOf(req.contextValues.get(restCallKey) !== undefined, req.header.get("content-type")),
      code: "OK",
    };
    try {
      return await next(req);
    } catch (err) {
      labels.code = Code[ConnectError.from(err).code] ?? "Unknown";
      throw err;
    } finally {
      rpcTotal.inc(labels);
      rpcSeconds.observe(labels, Number(process.hrtime.bigint() - start) / 1e9);
    }
  };

  const handler = (req: NodeRequest, res: NodeResponse): boolean => {
    const path = (req.url ?? "").split("?", 1)[0];
    if (path !== "/metrics") return false;
    const r = res as import("node:http").ServerResponse;
    if (req.method !== "GET" && req.method !== "HEAD") {
      r.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain" });
      r.end("method not allowed\n");
      return true;
    }
    if (scraper !== undefined) {
      if (!scraper.match(bearerTokenOf(req.headers.authorization))) {
        r.writeHead(401, { "www-authenticate": 'Bearer realm="metrics"', "content-type": "text/plain" });
        r.end("unauthorized\n");
        return true;
      }
    }
    registry.metrics().then(
      (text) => {
        if (res.headersSent || res.destroyed) return;
        r.writeHead(200, {
          "content-type": registry.contentType,
          "content-length": Buffer.byteLength(text),
          "cache-control": "no-store",
        });
        r.end(req.method === "HEAD" ? undefined : text);
      },
      () => {
        if (res.headersSent || res.destroyed) return;
        r.writeHead(500, { "content-type": "text/plain" });
        r.end("metrics unavailable\n");
      },
    );
    return true;
  };

  return {
    registry,
    interceptor,
    handler,
    recordMovement: (type, outcome) => movements.inc({ type, outcome }),
    recordBatch: (size) => batches.observe(size),
    watchPool(read) {
      readPool = read;
    },
  };
}

/** gRPC and gRPC-Web by content type; Connect is everything else that reached the router. */
export function protocolOf(rest: boolean, contentType: string | null): Protocol {
  if (rest) return "rest";
  const ct = (contentType ?? "").toLowerCase();
  if (ct.startsWith("application/grpc-web")) return "grpc-web";
  if (ct.startsWith("application/grpc")) return "grpc";
  return "connect";
}

function shortService(typeName: string): string {
  const dot = typeName.lastIndexOf(".");
  return dot < 0 ? typeName : typeName.slice(dot + 1);
}

/**
 * The ledger with its movements counted. The ledger itself stays free of metrics: the
 * wrapper sees each result (replayed or not) and each refusal's reason.
 */
export function instrumentLedger(ledger: Ledger, metrics: Metrics): Ledger {
  const count = <I>(type: "credit" | "debit", fn: (input: I) => ReturnType<Movements["credit"]>) =>
    async (input: I) => {
      try {
        const result = await fn(input);
        metrics.recordMovement(type, result.replayed ? "replayed" : "applied");
        return result;
      } catch (err) {
        metrics.recordMovement(type, err instanceof LedgerError ? err.reason.toLowerCase() : "error");
        throw err;
      }
    };
  const movements: Movements = {
    ...ledger.movements,
    credit: count("credit", (input) => ledger.movements.credit(input)),
    debit: count("debit", (input) => ledger.movements.debit(input)),
  };
  return { ...ledger, movements };
}

/** The knex pool MikroORM uses (tarn): used, free and waiting connections. */
export function ledgerPoolStats(ledger: Ledger): PoolStats | undefined {
  try {
    const pool = (ledger.orm.em.getConnection().getKnex() as unknown as { client?: { pool?: TarnPool } }).client?.pool;
    if (!pool) return undefined;
    return { used: pool.numUsed(), free: pool.numFree(), pending: pool.numPendingAcquires(), max: pool.max };
  } catch {
    return undefined;
  }
}

interface TarnPool {
  numUsed(): number;
  numFree(): number;
  numPendingAcquires(): number;
  max: number;
}
