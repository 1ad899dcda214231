/**
 * All configuration, read from the environment once at start and checked: a bad value stops
 * the service with a message naming the variable (spec section 7). Nothing else reads
 * process.env, so this file (and CONFIG_VARIABLES) is the whole list.
 */

import { isIP } from "node:net";
import path from "node:path";

export type AuthProviderName = "flowless" | "local";
export type LogLevel = "debug" | "info" | "warn" | "error";

export interface Config {
  port: number;
  host: string;
  /** Unset: run an embedded PostgreSQL with its data in embeddedPgDir. */
  databaseUrl: string | undefined;
  embeddedPgDir: string;
  migrateOnStart: boolean;
  /** Group commit of concurrent credits and debits into one database transaction. */
  ledgerBatching: boolean;
  dbPoolMax: number;
  /** Starts with `/`, never ends with `/`. */
  restBasePath: string;

  authProvider: AuthProviderName;
  /** Set (no trailing slash) whenever authProvider is "flowless". */
  flowlessApiUrl: string | undefined;
  /** Set (≥ 32 characters) whenever authProvider is "flowless". */
  bridgeValidationSecret: string | undefined;
  sessionCacheTtlSeconds: number;
  sessionCacheMax: number;
  flowlessTimeoutMs: number;
  flowlessRetries: number;
  serviceTokens: readonly string[];

  accountBalanceEnabled: boolean;
  requireAuth: boolean;
  /** Empty: every role may use the module. */
  allowedRoles: readonly string[];
  adminRoles: readonly string[];
  /** METRICS_TOKEN: the bearer token GET /metrics asks for; undefined: /metrics is open. */
  metricsToken: string | undefined;
  /** CORS_ALLOWED_ORIGINS: exact origins, or "*". Empty: no CORS. */
  corsAllowedOrigins: readonly string[];

  maxRequestBytes: number;
  requestTimeoutMs: number;
  shutdownGraceMs: number;
  expirySweepSeconds: number;
  logLevel: LogLevel;
}

/** One problem per variable; the message lists them all so one restart fixes them all. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
  constructor(readonly problems: ReadonlyArray<{ variable: string; problem: string }>) {
    super(problems.map((p) => `${p.variable}: ${p.problem}`).join("; "));
  }
}

export interface ConfigVariable {
  name: string;
  /** As a user would write it; "" when there is none. */
  default: string;
  meaning: string;
}

const MIB = 1024 * 1024;

/** The documented variables; the README table can be checked against this (see describeConfig). */
export const CONFIG_VARIABLES: readonly ConfigVariable[] = [
  { name: "PORT", default: "8080", meaning: "TCP port for HTTP/1.1 and cleartext HTTP/2 (gRPC, Connect, gRPC-Web, REST); 0 picks a free port" },
  { name: "HOST", default: "0.0.0.0", meaning: "address to listen on" },
  { name: "DATABASE_URL", default: "", meaning: "postgres:// URL; unset runs an embedded PostgreSQL" },
  { name: "EMBEDDED_PG_DIR", default: ".data/postgres", meaning: "data folder of the embedded PostgreSQL (relative to the folder the command was started from: `INIT_CWD` under npm and pnpm, else the working directory)" },
  { name: "MIGRATE_ON_START", default: "true", meaning: "apply pending migrations at start" },
  { name: "LEDGER_BATCHING", default: "true", meaning: "group commit: concurrent credits and debits share one database transaction, each with its own outcome" },
  { name: "DB_POOL_MAX", default: "10", meaning: "database connections per instance (1-1000)" },
  { name: "REST_BASE_PATH", default: "/bridge-payment/account-balance", meaning: "prefix of the REST routes (starts with /, no trailing /)" },
  { name: "AUTH_PROVIDER", default: "local", meaning: "session provider: local (sessions in this database) or flowless" },
  { name: "FLOWLESS_API_URL", default: "", meaning: "Flowless base URL (http/https); required with AUTH_PROVIDER=flowless" },
  { name: "BRIDGE_VALIDATION_SECRET", default: "", meaning: "X-Bridge-Secret sent to Flowless, at least 32 characters; required with AUTH_PROVIDER=flowless" },
  { name: "SESSION_CACHE_TTL_SECONDS", default: "300", meaning: "how long a validated session is cached (0 disables the cache)" },
  { name: "SESSION_CACHE_MAX", default: "10000", meaning: "most sessions kept in the cache" },
  { name: "FLOWLESS_TIMEOUT_MS", default: "5000", meaning: "timeout of one call to Flowless" },
  { name: "FLOWLESS_RETRIES", default: "3", meaning: "retries on network errors and 5xx from Flowless (0-10)" },
  { name: "SERVICE_TOKENS", default: "", meaning: "comma-separated bearer tokens (each at least 32 characters) that act as role service" },
  { name: "ACCOUNT_BALANCE_ENABLED", default: "true", meaning: "false answers every account-balance route and RPC with MODULE_DISABLED" },
  { name: "ACCOUNT_BALANCE_REQUIRE_AUTH", default: "true", meaning: "false trusts X-User-ID / X-User-Type from a gateway when no credentials are sent" },
  { name: "ACCOUNT_BALANCE_ALLOWED_ROLES", default: "", meaning: "comma-separated user_types allowed to use the module; empty allows every role" },
  { name: "ACCOUNT_BALANCE_ADMIN_ROLES", default: "admin,superadmin", meaning: "comma-separated user_types with admin rights" },
  { name: "CORS_ALLOWED_ORIGINS", default: "", meaning: "comma-separated origins (`https://app.example.com`) whose browser pages may call every protocol across origins, credentials sent as headers (never cookies); `*` allows any origin; unset: no CORS" },
  { name: "METRICS_TOKEN", default: "", meaning: "bearer token (at least 32 characters) that `GET /metrics` then requires (`Authorization: Bearer …`, as Prometheus' `authorization.credentials` sends it); unset: `/metrics` is open, so keep the port off the internet or set it" },
  { name: "MAX_REQUEST_BYTES", default: String(MIB), meaning: "largest request body or message accepted, in bytes (1024 to 64 MiB)" },
  { name: "REQUEST_TIMEOUT_MS", default: "30000", meaning: "server-side cap on one call, and on receiving an HTTP/1.1 request" },
  { name: "SHUTDOWN_GRACE_MS", default: "10000", meaning: "on SIGTERM, how long in-flight calls may take before connections are cut" },
  { name: "EXPIRY_SWEEP_SECONDS", default: "60", meaning: "interval of the balance expiry sweeper (at least 1)" },
  { name: "LOG_LEVEL", default: "info", meaning: "debug, info, warn or error" },
];

/** A Markdown table of CONFIG_VARIABLES, for the README. */
export function describeConfig(): string {
  const rows = CONFIG_VARIABLES.map((v) => `| \`${v.name}\` | ${v.default === "" ? "(unset)" : `\`${v.default}\``} | ${v.meaning} |`);
  return ["| variable | default | meaning |", "|---|---|---|", ...rows].join("\n");
}

const DEFAULTS = new Map(CONFIG_VARIABLES.map((v) => [v.name, v.default]));
/**
 * The embedded PostgreSQL's data folder as an absolute path. A relative EMBEDDED_PG_DIR (the
 * default too) is taken from where the command was started: npm and pnpm pass that folder
 * as INIT_CWD to every script they run, also to a script that runs another package's script
 * in that package's folder (the root `pnpm start` runs apps/server's). So `pnpm start`,
 * `pnpm migrate` and the CLI run from the root all use the root's ./.data/postgres.
 */
export function embeddedDataDir(config: Pick<Config, "embeddedPgDir">, env: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(env.INIT_CWD || process.cwd(), config.embeddedPgDir);
}

// Values of these are never echoed back in an error message (a URL may carry a password).
const SECRET = new Set(["BRIDGE_VALIDATION_SECRET", "SERVICE_TOKENS", "METRICS_TOKEN", "DATABASE_URL", "FLOWLESS_API_URL"]);
const MIN_SECRET_CHARS = 32;
// A token travels as `Authorization: Bearer <token>`: one word of visible ASCII. A space would
// end it early, and HTTP reads header bytes as Latin-1, so no other character could match.
const BEARER_TOKEN = /^[!-~]+$/;
const BEARER_TOKEN_RULE = "may hold only visible ASCII characters (no spaces): it is sent as one word after Bearer";

/**
 * Reads and checks every variable. An empty (or blank) value counts as unset, as
 * `FOO=` in a compose file usually means. Throws ConfigError listing every bad value.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const problems: Array<{ variable: string; problem: string }> = [];
  const fail = (variable: string, problem: string) => {
    problems.push({ variable, problem });
  };

  const raw = (name: string): string | undefined => {
    if (!DEFAULTS.has(name)) throw new Error(`undocumented configuration variable ${name}`);
    const value = env[name]?.trim();
    return value === undefined || value === "" ? undefined : value;
  };
  const shown = (name: string, value: string) => (SECRET.has(name) ? "the value given" : JSON.stringify(value));
  const withDefault = (name: string): string => raw(name) ?? DEFAULTS.get(name)!;

  const int = (name: string, min: number, max: number): number => {
    const value = withDefault(name);
    const n = /^\d+$/.test(value) ? Number(value) : Number.NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      fail(name, `${shown(name, value)} is not a whole number from ${min} to ${max}`);
      return Number(DEFAULTS.get(name));
    }
    return n;
  };

  const bool = (name: string): boolean => {
    const value = withDefault(name).toLowerCase();
    if (value === "true" || value === "1") return true;
    if (value === "false" || value === "0") return false;
    fail(name, `${shown(name, value)} is not a boolean (use true, false, 1 or 0)`);
    return DEFAULTS.get(name) === "true";
  };

  const oneOf = <T extends string>(name: string, allowed: readonly T[]): T => {
    const value = withDefault(name).toLowerCase();
    if ((allowed as readonly string[]).includes(value)) return value as T;
    fail(name, `${shown(name, value)} is not one of ${allowed.join(", ")}`);
    return DEFAULTS.get(name) as T;
  };

  const roles = (name: string): string[] => {
    const list = withDefault(name)
      .split(",")
      .map((r) => r.trim())
      .filter((r) => r !== "");
    for (const role of list) {
      if (!/^[A-Za-z0-9_.:-]+$/.test(role)) fail(name, `role ${JSON.stringify(role)} may contain only letters, digits and _ . : -`);
    }
    return list;
  };

  const url = (name: string, protocols: readonly string[]): string | undefined => {
    const value = raw(name);
    if (value === undefined) return undefined;
    let parsed: URL;
    try {
      parsed = new URL(value);
    } catch {
      fail(name, `${shown(name, value)} is not a URL`);
      return undefined;
    }
    if (!protocols.includes(parsed.protocol)) {
      fail(name, `must be a ${protocols.map((p) => p.replace(/:$/, "")).join(" or ")} URL`);
      return undefined;
    }
    return value;
  };

  const port = int("PORT", 0, 65535);
  const host = withDefault("HOST");
  // An IP address or a host name: anything else would fail only at listen. A name's last
  // label is never all digits (RFC 3696), so "999.1.1.1" is a mistyped address, not a name.
  const hostName = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
  if (!isIP(host) && (!hostName.test(host) || /(^|\.)[0-9]+$/.test(host))) {
    fail("HOST", `${shown("HOST", host)} is not an IP address or a host name`);
  }

  const databaseUrl = url("DATABASE_URL", ["postgres:", "postgresql:"]);
  const embeddedPgDir = withDefault("EMBEDDED_PG_DIR");
  const migrateOnStart = bool("MIGRATE_ON_START");
  const ledgerBatching = bool("LEDGER_BATCHING");
  const dbPoolMax = int("DB_POOL_MAX", 1, 1000);

  const restBasePath = withDefault("REST_BASE_PATH");
  if (!restBasePath.startsWith("/")) fail("REST_BASE_PATH", `${shown("REST_BASE_PATH", restBasePath)} must start with /`);
  else if (restBasePath.endsWith("/")) fail("REST_BASE_PATH", `${shown("REST_BASE_PATH", restBasePath)} must not end with /`);
  else if (!/^(\/[A-Za-z0-9._~!$&'()*+,;=:@-]+)+$/.test(restBasePath)) {
    fail("REST_BASE_PATH", `${shown("REST_BASE_PATH", restBasePath)} must be /-separated non-empty path segments without spaces, %, ? or #`);
  }

  const authProvider = oneOf<AuthProviderName>("AUTH_PROVIDER", ["local", "flowless"]);
  const flowlessApiUrl = url("FLOWLESS_API_URL", ["http:", "https:"])?.replace(/\/+$/, "");
  const flowlessParsed = flowlessApiUrl === undefined ? undefined : new URL(flowlessApiUrl);
  if (flowlessParsed !== undefined && (flowlessParsed.username !== "" || flowlessParsed.password !== "")) {
    // fetch refuses such a URL on every call; the bridge secret is the credential.
    fail("FLOWLESS_API_URL", "must not carry a user name or password (X-Bridge-Secret authenticates)");
  }
  const bridgeValidationSecret = raw("BRIDGE_VALIDATION_SECRET");
  if (bridgeValidationSecret !== undefined && bridgeValidationSecret.length < MIN_SECRET_CHARS) {
    fail("BRIDGE_VALIDATION_SECRET", `must be at least ${MIN_SECRET_CHARS} characters (got ${bridgeValidationSecret.length})`);
  }
  if (authProvider === "flowless") {
    if (raw("FLOWLESS_API_URL") === undefined) fail("FLOWLESS_API_URL", "is required when AUTH_PROVIDER=flowless");
    if (bridgeValidationSecret === undefined) fail("BRIDGE_VALIDATION_SECRET", "is required when AUTH_PROVIDER=flowless");
  }
  const sessionCacheTtlSeconds = int("SESSION_CACHE_TTL_SECONDS", 0, 86_400);
  const sessionCacheMax = int("SESSION_CACHE_MAX", 1, 10_000_000);
  const flowlessTimeoutMs = int("FLOWLESS_TIMEOUT_MS", 100, 120_000);
  const flowlessRetries = int("FLOWLESS_RETRIES", 0, 10);

  const serviceTokens = withDefault("SERVICE_TOKENS")
    .split(",")
    .map((t) => t.trim())
    .filter((t) => t !== "");
  serviceTokens.forEach((token, i) => {
    if (token.length < MIN_SECRET_CHARS) {
      fail("SERVICE_TOKENS", `token #${i + 1} has ${token.length} characters; each must have at least ${MIN_SECRET_CHARS}`);
    } else if (!BEARER_TOKEN.test(token)) {
      fail("SERVICE_TOKENS", `token #${i + 1} ${BEARER_TOKEN_RULE}`);
    }
  });

  const accountBalanceEnabled = bool("ACCOUNT_BALANCE_ENABLED");
  const requireAuth = bool("ACCOUNT_BALANCE_REQUIRE_AUTH");
  const allowedRoles = roles("ACCOUNT_BALANCE_ALLOWED_ROLES");
  const adminRoles = roles("ACCOUNT_BALANCE_ADMIN_ROLES");

  const corsAllowedOrigins = withDefault("CORS_ALLOWED_ORIGINS")
    .split(",")
    .map((o) => o.trim())
    .filter((o) => o !== "");
  for (const origin of corsAllowedOrigins) {
    if (origin !== "*" && !isOrigin(origin)) {
      fail("CORS_ALLOWED_ORIGINS", `${JSON.stringify(origin)} is not an origin: scheme://host[:port] without a path, or *`);
    }
  }

  const metricsToken = raw("METRICS_TOKEN");
  if (metricsToken !== undefined && metricsToken.length < MIN_SECRET_CHARS) {
    fail("METRICS_TOKEN", `has ${metricsToken.length} characters; it must have at least ${MIN_SECRET_CHARS}`);
  } else if (metricsToken !== undefined && !BEARER_TOKEN.test(metricsToken)) {
    fail("METRICS_TOKEN", BEARER_TOKEN_RULE);
  }

  const maxRequestBytes = int("MAX_REQUEST_BYTES", 1024, 64 * MIB);
  const requestTimeoutMs = int("REQUEST_TIMEOUT_MS", 100, 3_600_000);
  const shutdownGraceMs = int("SHUTDOWN_GRACE_MS", 0, 600_000);
  const expirySweepSeconds = int("EXPIRY_SWEEP_SECONDS", 1, 86_400);
  const logLevel = oneOf<LogLevel>("LOG_LEVEL", ["debug", "info", "warn", "error"]);

  if (problems.length > 0) throw new ConfigError(problems);
  return {
    port,
    host,
    databaseUrl,
    embeddedPgDir,
    migrateOnStart,
    ledgerBatching,
    dbPoolMax,
    restBasePath,
    authProvider,
    flowlessApiUrl,
    bridgeValidationSecret,
    sessionCacheTtlSeconds,
    sessionCacheMax,
    flowlessTimeoutMs,
    flowlessRetries,
    serviceTokens,
    accountBalanceEnabled,
    requireAuth,
    allowedRoles,
    adminRoles,
    metricsToken,
    corsAllowedOrigins,
    maxRequestBytes,
    requestTimeoutMs,
    shutdownGraceMs,
    expirySweepSeconds,
    logLevel,
  };
}

/** "https://app.example.com": what a browser sends as Origin, exactly. */
function isOrigin(value: string): boolean {
  try {
    const u = new URL(value);
    return (u.protocol === "http:" || u.protocol === "https:") && u.origin === value;
  } catch {
    return false;
  }
}
