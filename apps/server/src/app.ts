import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { createConnectRouter, type ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { parseTimeout as parseConnectTimeout } from "@connectrpc/connect/protocol-connect";
import { parseTimeout as parseGrpcTimeout } from "@connectrpc/connect/protocol-grpc";
import {
  AccountBalanceService,
  file_accountbalance_v1_account_balance_service,
} from "@account-balance/proto/accountbalance/v1/account_balance_service_pb.js";
import {
  AccountBalanceAdminService,
  file_accountbalance_v1_account_balance_admin_service,
} from "@account-balance/proto/accountbalance/v1/account_balance_admin_service_pb.js";
import { file_grpc_health_v1_health } from "@account-balance/proto/grpc/health/v1/health_pb.js";
import { createRestGateway, createUnaryInvoker, implementation } from "@account-balance/connect-rest";
import { openLedger, sharedReadiness, startSweeper, type Ledger } from "@account-balance/ledger";
import { embeddedDataDir, type Config } from "./config.js";
import type { Logger } from "./log.js";
import { createAuthInterceptor, logStartupWarnings } from "./auth/interceptor.js";
import { createFlowlessProvider } from "./auth/flowless.js";
import { createLocalProvider } from "./auth/local.js";
import type { SessionProvider } from "./auth/session.js";
import { createErrorsInterceptor } from "./rpc/errors-interceptor.js";
import { createValidationInterceptor } from "./rpc/validation.js";
import { createDeadlineInterceptor } from "./rpc/deadline.js";
import { accountBalanceService } from "./rpc/account-balance-service.js";
import { adminService } from "./rpc/admin-service.js";
import { registerHealth } from "./transport/health.js";
import { registerReflection } from "./transport/reflection.js";
import { createCors } from "./transport/cors.js";
import { createProbes } from "./transport/probes.js";
import { createDocs } from "./transport/docs.js";
import { listen } from "./transport/listen.js";
import { strictJsonDecoder } from "./transport/strict-json.js";
import { grpcMessageReadableByGrpcJs } from "./transport/grpc-message.js";
import { createUnaryShortPath } from "./transport/unary-short-path.js";
import { restError, restSuccess } from "./rest.js";
import { createMetrics, instrumentLedger, ledgerPoolStats, type Metrics } from "./metrics.js";

export interface App {
  readonly port: number;
  readonly ledger: Ledger;
  /** Stops taking calls, lets those in flight finish (up to the grace period), then closes the database. */
  close(): Promise<void>;
}

const GUARDED = [AccountBalanceService.typeName, AccountBalanceAdminService.typeName];

/** Wires the whole service: ledger, auth, interceptors, RPCs, REST gateway, probes, one port. */
export async function startApp(config: Config, log: Logger): Promise<App> {
  const metrics = createMetrics({ token: config.metricsToken });
  const ledger = await openLedger({
    databaseUrl: config.databaseUrl,
    dataDir: embeddedDataDir(config),
    migrate: config.migrateOnStart,
    poolMax: config.dbPoolMax,
    log: (msg) => log.info(msg),
    batching: config.ledgerBatching,
    onBatch: (size) => metrics.recordBatch(size),
  });
  try {
    return await serve(config, log, ledger, metrics);
  } catch (err) {
    await ledger.close();
    throw err;
  }
}

async function serve(config: Config, log: Logger, ledger: Ledger, metrics: Metrics): Promise<App> {
  metrics.watchPool(() => ledgerPoolStats(ledger));
  const counted = instrumentLedger(ledger, metrics);
  const authOptions = {
    enabled: config.accountBalanceEnabled,
    requireAuth: config.requireAuth,
    allowedRoles: config.allowedRoles,
    adminRoles: config.adminRoles,
    serviceTokens: config.serviceTokens,
    provider: sessionProvider(config, ledger, log),
    adminServices: [AccountBalanceAdminService.typeName],
    guardedServices: GUARDED,
    log,
  };
  logStartupWarnings(authOptions, log);

  // One interceptor chain for every protocol, the REST gateway included: metrics outermost
  // (they see the final codes), then the deadline (answered when it passes), errors, then
  // flags/credentials/roles, then input validation (the spec's order of checks).
  const interceptors = [
    metrics.interceptor,
    createDeadlineInterceptor(),
    createErrorsInterceptor(log),
    createAuthInterceptor(authOptions),
    createValidationInterceptor(),
  ];
  let router: ConnectRouter | undefined;
  const accountBalance = accountBalanceService(counted);
  const admin = adminService(counted);
  // The REST gateway and plain unary gRPC calls run the same implementations through the
  // same interceptors, without connect's streaming pipeline (transport/unary-short-path.ts).
  const invoker = createUnaryInvoker(
    [implementation(AccountBalanceService, accountBalance), implementation(AccountBalanceAdminService, admin)],
    interceptors,
  );
  // Every open Watch stream, which needs no credentials, polls once a second: they share one
  // check a second between them, not one each on the pool the movements use.
  const watchedReadiness = sharedReadiness(() => ledger.ready(), 1_000);
  const routes = (r: ConnectRouter) => {
    router = r;
    r.service(AccountBalanceService, accountBalance);
    r.service(AccountBalanceAdminService, admin);
    registerHealth(r, async (service, { watching }) => {
      if (service !== "" && !GUARDED.includes(service)) return "SERVICE_UNKNOWN";
      if (service !== "" && !config.accountBalanceEnabled) return "NOT_SERVING";
      return (await (watching ? watchedReadiness() : ledger.ready())).ok ? "SERVING" : "NOT_SERVING";
    });
    registerReflection(r, [
      file_accountbalance_v1_account_balance_service,
      file_accountbalance_v1_account_balance_admin_service,
      file_grpc_health_v1_health,
    ]);
  };
  const writeMaxBytes = 16 * 1024 * 1024;
  const connectJson = { ignoreUnknownFields: false, textDecoder: strictJsonDecoder as unknown as TextDecoder };
  const connect = connectNodeAdapter({
    routes,
    interceptors,
    readMaxBytes: config.maxRequestBytes,
    writeMaxBytes,
    maxTimeoutMs: config.requestTimeoutMs,
    // Strict Connect JSON: with connect's default (ignore unknown fields) protobuf-es also
    // drops an unknown enum name, so {"balanceType": "BALANCE_TYPE_GOLD"} would create a
    // general balance. The REST gateway parses its own bodies and still ignores unknown fields.
    jsonOptions: connectJson,
    grpc: true,
    grpcWeb: true,
    connect: true,
  });
  if (!router) throw new Error("connect router was not built");
  const rest = createRestGateway({
    services: [AccountBalanceService, AccountBalanceAdminService],
    invoker,
    basePath: config.restBasePath,
    ownsBasePath: true,
    maxBodyBytes: config.maxRequestBytes,
    timeoutMs: config.requestTimeoutMs,
    formatSuccess: restSuccess,
    formatError: restError,
    // `to` is "created at or before" (spec): to=2026-11-27 means through that day.
    dateEndsDay: ["to"],
    onError: (err) => log.error("rest gateway error", { error: err instanceof Error ? err.name : typeof err }),
  });
  const unaryShortPath = createUnaryShortPath({
    invoker,
    handlers: router.handlers,
    readMaxBytes: config.maxRequestBytes,
    writeMaxBytes,
    maxTimeoutMs: config.requestTimeoutMs,
    ignoreUnknownFields: connectJson.ignoreUnknownFields,
  });

  const cors = createCors({ allowedOrigins: config.corsAllowedOrigins });
  const probes = createProbes({ ready: () => ledger.ready() });
  const docs = createDocs({
    basePathForServer: config.restBasePath,
    onError: (err) => log.error("docs: a Swagger UI file could not be read", { error: (err as NodeJS.ErrnoException)?.code ?? "unknown" }),
  });

  type Req = IncomingMessage | Http2ServerRequest;
  type Res = ServerResponse | Http2ServerResponse;
  const handler = (req: Req, res: Res) => {
    // /metrics before CORS: no page on another origin may read it, whatever CORS_ALLOWED_ORIGINS says.
    if (metrics.handler(req, res) || cors(req, res) || probes(req, res) || docs(req, res)) return;
    void rest(req, res, () => {
      defaultDeadline(req, config.requestTimeoutMs);
      if (unaryShortPath(req, res)) return;
      grpcMessageReadableByGrpcJs(res);
      connect(req as IncomingMessage, res as ServerResponse);
    });
  };

  // Every instance sweeps; SKIP LOCKED in the ledger keeps them from expiring a balance twice.
  const sweeper = startSweeper(ledger, {
    intervalMs: config.expirySweepSeconds * 1000,
    log: (msg: string) => log.info(msg),
    warn: (msg: string) => log.warn(msg),
  });
  const server = await listen({ port: config.port, host: config.host, handler, requestTimeoutMs: config.requestTimeoutMs });
  log.info("account-balance listening", { port: server.port, rest: config.restBasePath });
  return {
    port: server.port,
    ledger,
    async close() {
      await server.close(config.shutdownGraceMs);
      await sweeper.stop();
      await ledger.close();
    },
  };
}

/**
 * A call without a deadline gets REQUEST_TIMEOUT_MS, so a stalled request body or a slow call
 * ends with DEADLINE_EXCEEDED instead of holding its stream; a deadline longer than that is
 * cut to it (the server's cap on one call either way). Shorter client deadlines are kept.
 * connect would refuse a longer one, but only after arming the deadline's timer with it:
 * Node turns a delay past 2^31-1 ms into 1 ms and prints a TimeoutOverflowWarning, so any
 * client could write a line to the server's stderr per request ("grpc-timeout: 99999999H").
 */
function defaultDeadline(req: { url?: string; headers: Record<string, string | string[] | undefined> }, ms: number): void {
  const grpc = req.headers["grpc-timeout"];
  const connect = req.headers["connect-timeout-ms"];
  const tooLong = {
    grpc: typeof grpc === "string" && (parseGrpcTimeout(grpc, ms).timeoutMs ?? 0) > ms,
    connect: typeof connect === "string" && (parseConnectTimeout(connect, ms).timeoutMs ?? 0) > ms,
  };
  // Malformed values are left for connect to refuse (it arms no timer for them).
  if (!req.url?.startsWith("/accountbalance.")) {
    // Health Watch and reflection streams may live long: no default. A deadline past the cap
    // is still refused by connect, as before; it only arrives small enough for a timer.
    if (tooLong.grpc) req.headers["grpc-timeout"] = `${ms + 1}m`;
    if (tooLong.connect) req.headers["connect-timeout-ms"] = String(ms + 1);
    return;
  }
  if (grpc === undefined && connect === undefined) {
    req.headers["grpc-timeout"] = `${ms}m`;
    req.headers["connect-timeout-ms"] = String(ms);
    return;
  }
  if (tooLong.grpc) req.headers["grpc-timeout"] = `${ms}m`;
  if (tooLong.connect) req.headers["connect-timeout-ms"] = String(ms);
}

function sessionProvider(config: Config, ledger: Ledger, log: Logger): SessionProvider {
  if (config.authProvider === "flowless") {
    return createFlowlessProvider({
      apiUrl: config.flowlessApiUrl!,
      bridgeSecret: config.bridgeValidationSecret!,
      cacheTtlSeconds: config.sessionCacheTtlSeconds,
      cacheMax: config.sessionCacheMax,
      timeoutMs: config.flowlessTimeoutMs,
      retries: config.flowlessRetries,
      log,
    });
  }
  return createLocalProvider(ledger.sessions);
}
