import { describe, expect, it } from "vitest";
import path from "node:path";
import { CONFIG_VARIABLES, ConfigError, describeConfig, embeddedDataDir, loadConfig } from "./config.js";

const SECRET = "s".repeat(32);

function problemWith(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error(`expected a ConfigError for ${JSON.stringify(env)}`);
}

describe("loadConfig", () => {
  it("has a working default for everything", () => {
    expect(loadConfig({})).toEqual({
      port: 8080,
      host: "0.0.0.0",
      databaseUrl: undefined,
      embeddedPgDir: ".data/postgres",
      migrateOnStart: true,
      ledgerBatching: true,
      dbPoolMax: 10,
      restBasePath: "/bridge-payment/account-balance",
      authProvider: "local",
      flowlessApiUrl: undefined,
      bridgeValidationSecret: undefined,
      sessionCacheTtlSeconds: 300,
      sessionCacheMax: 10_000,
      flowlessTimeoutMs: 5000,
      flowlessRetries: 3,
      serviceTokens: [],
      accountBalanceEnabled: true,
      requireAuth: true,
      allowedRoles: [],
      adminRoles: ["admin", "superadmin"],
      corsAllowedOrigins: [],
      maxRequestBytes: 1024 * 1024,
      requestTimeoutMs: 30_000,
      shutdownGraceMs: 10_000,
      expirySweepSeconds: 60,
      logLevel: "info",
    });
  });

  it("reads every variable", () => {
    const config = loadConfig({
      PORT: "0",
      HOST: "127.0.0.1",
      DATABASE_URL: "postgres://u@db:5432/ab",
      EMBEDDED_PG_DIR: "/var/lib/ab",
      MIGRATE_ON_START: "FALSE",
      LEDGER_BATCHING: "false",
      DB_POOL_MAX: "25",
      REST_BASE_PATH: "/api/v2",
      AUTH_PROVIDER: "flowless",
      FLOWLESS_API_URL: "https://auth.example.com/base/",
      BRIDGE_VALIDATION_SECRET: SECRET,
      SESSION_CACHE_TTL_SECONDS: "0",
      SESSION_CACHE_MAX: "50",
      FLOWLESS_TIMEOUT_MS: "1500",
      FLOWLESS_RETRIES: "0",
      SERVICE_TOKENS: ` ${"a".repeat(32)} ,${"b".repeat(40)},`,
      ACCOUNT_BALANCE_ENABLED: "0",
      ACCOUNT_BALANCE_REQUIRE_AUTH: "false",
      ACCOUNT_BALANCE_ALLOWED_ROLES: "customer, merchant",
      ACCOUNT_BALANCE_ADMIN_ROLES: "ops",
      CORS_ALLOWED_ORIGINS: "https://app.example.com",
      MAX_REQUEST_BYTES: "65536",
      REQUEST_TIMEOUT_MS: "1000",
      SHUTDOWN_GRACE_MS: "0",
      EXPIRY_SWEEP_SECONDS: "5",
      LOG_LEVEL: "DEBUG",
    });
    expect(config).toEqual({
      port: 0,
      host: "127.0.0.1",
      databaseUrl: "postgres://u@db:5432/ab",
      embeddedPgDir: "/var/lib/ab",
      migrateOnStart: false,
      ledgerBatching: false,
      dbPoolMax: 25,
      restBasePath: "/api/v2",
      authProvider: "flowless",
      flowlessApiUrl: "https://auth.example.com/base",
      bridgeValidationSecret: SECRET,
      sessionCacheTtlSeconds: 0,
      sessionCacheMax: 50,
      flowlessTimeoutMs: 1500,
      flowlessRetries: 0,
      serviceTokens: ["a".repeat(32), "b".repeat(40)],
      accountBalanceEnabled: false,
      requireAuth: false,
      allowedRoles: ["customer", "merchant"],
      adminRoles: ["ops"],
      corsAllowedOrigins: ["https://app.example.com"],
      maxRequestBytes: 65536,
      requestTimeoutMs: 1000,
      shutdownGraceMs: 0,
      expirySweepSeconds: 5,
      logLevel: "debug",
    });
  });

  it("treats an empty value as unset", () => {
    expect(loadConfig({ PORT: "", DATABASE_URL: " ", LOG_LEVEL: "" })).toMatchObject({
      port: 8080,
      databaseUrl: undefined,
      logLevel: "info",
    });
  });

  it.each([
    ["PORT", "http"],
    ["PORT", "65536"],
    ["PORT", "-1"],
    ["PORT", "80.5"],
    ["PORT", "1e3"],
    ["DB_POOL_MAX", "0"],
    ["SESSION_CACHE_TTL_SECONDS", "-5"],
    ["SESSION_CACHE_MAX", "0"],
    ["FLOWLESS_TIMEOUT_MS", "soon"],
    ["FLOWLESS_RETRIES", "11"],
    ["MAX_REQUEST_BYTES", "1"],
    ["MAX_REQUEST_BYTES", "0x100000"],
    ["REQUEST_TIMEOUT_MS", "5"],
    ["SHUTDOWN_GRACE_MS", "ten"],
    ["EXPIRY_SWEEP_SECONDS", "0"],
    ["MIGRATE_ON_START", "yes"],
    ["ACCOUNT_BALANCE_ENABLED", "off"],
    ["ACCOUNT_BALANCE_REQUIRE_AUTH", "2"],
    ["LOG_LEVEL", "verbose"],
    ["AUTH_PROVIDER", "oauth"],
    ["REST_BASE_PATH", "api"],
    ["REST_BASE_PATH", "/api/"],
    ["REST_BASE_PATH", "/"],
    ["REST_BASE_PATH", "/a b"],
    ["REST_BASE_PATH", "/a//b"],
    ["DATABASE_URL", "mysql://db/x"],
    ["DATABASE_URL", "not a url"],
    ["FLOWLESS_API_URL", "ftp://auth.example.com"],
    ["ACCOUNT_BALANCE_ALLOWED_ROLES", "customer,bad role"],
    ["ACCOUNT_BALANCE_ADMIN_ROLES", "admin;drop"],
    ["HOST", "not a host"],
    ["HOST", "http://127.0.0.1"],
    ["HOST", "300.1.1.1:80"],
    ["HOST", "999.1.1.1"],
    ["HOST", "10.0.0"],
    ["CORS_ALLOWED_ORIGINS", "https://app.example.com/"],
    ["CORS_ALLOWED_ORIGINS", "app.example.com"],
    ["CORS_ALLOWED_ORIGINS", "https://a.example,ftp://b.example"],
  ])("refuses %s=%j and names it", (name, value) => {
    const err = problemWith({ [name]: value });
    expect(err.problems.map((p) => p.variable)).toEqual([name]);
    expect(err.message.startsWith(`${name}: `)).toBe(true);
  });

  it("takes origins, or *, for CORS_ALLOWED_ORIGINS (none by default)", () => {
    expect(loadConfig({}).corsAllowedOrigins).toEqual([]);
    expect(loadConfig({ CORS_ALLOWED_ORIGINS: " https://app.example.com, http://localhost:5173 " }).corsAllowedOrigins).toEqual([
      "https://app.example.com",
      "http://localhost:5173",
    ]);
    expect(loadConfig({ CORS_ALLOWED_ORIGINS: "*" }).corsAllowedOrigins).toEqual(["*"]);
  });

  it("takes an IP address or a host name for HOST", () => {
    for (const host of ["0.0.0.0", "127.0.0.1", "::", "::1", "localhost", "api.internal-1.example.com"]) {
      expect(loadConfig({ HOST: host }).host).toBe(host);
    }
  });

  it("says what is wrong with a number", () => {
    expect(problemWith({ PORT: "http" }).message).toBe('PORT: "http" is not a whole number from 0 to 65535');
  });

  it("needs the Flowless URL and secret for AUTH_PROVIDER=flowless", () => {
    const err = problemWith({ AUTH_PROVIDER: "flowless" });
    expect(err.problems.map((p) => p.variable).sort()).toEqual(["BRIDGE_VALIDATION_SECRET", "FLOWLESS_API_URL"]);
    expect(err.message).toContain("FLOWLESS_API_URL: is required when AUTH_PROVIDER=flowless");
  });

  it("refuses a short bridge secret without echoing it", () => {
    const err = problemWith({ AUTH_PROVIDER: "flowless", FLOWLESS_API_URL: "http://auth:3000", BRIDGE_VALIDATION_SECRET: "hunter2-but-short" });
    expect(err.message).toBe("BRIDGE_VALIDATION_SECRET: must be at least 32 characters (got 17)");
  });

  it("refuses a short service token without echoing any token", () => {
    const good = "g".repeat(32);
    const err = problemWith({ SERVICE_TOKENS: `${good},tiny-token` });
    expect(err.message).toBe("SERVICE_TOKENS: token #2 has 10 characters; each must have at least 32");
    expect(err.message).not.toContain("tiny-token");
  });

  it("refuses a short METRICS_TOKEN without echoing it, and takes a long one", () => {
    const err = problemWith({ METRICS_TOKEN: "short-metrics" });
    expect(err.message).toBe("METRICS_TOKEN: has 13 characters; it must have at least 32");
    expect(loadConfig({ METRICS_TOKEN: ` ${"t".repeat(32)} ` }).metricsToken).toBe("t".repeat(32));
    expect(loadConfig({}).metricsToken).toBeUndefined();
    // Sent as one word after "Bearer": a space or a non-ASCII character could never match.
    for (const token of ["correct horse battery staple metrics token", `${"é".repeat(32)}`]) {
      const bad = problemWith({ METRICS_TOKEN: token });
      expect(bad.message).toBe("METRICS_TOKEN: may hold only visible ASCII characters (no spaces): it is sent as one word after Bearer");
      expect(problemWith({ SERVICE_TOKENS: token }).message).toBe(
        "SERVICE_TOKENS: token #1 may hold only visible ASCII characters (no spaces): it is sent as one word after Bearer",
      );
    }
  });

  it("does not echo FLOWLESS_API_URL (it may carry a password), and refuses credentials in it", () => {
    expect(problemWith({ FLOWLESS_API_URL: "http://u:TopSecret@[bad/" }).message).toBe("FLOWLESS_API_URL: the value given is not a URL");
    const err = problemWith({ FLOWLESS_API_URL: "https://u:TopSecret@flowless.example" });
    expect(err.message).toBe("FLOWLESS_API_URL: must not carry a user name or password (X-Bridge-Secret authenticates)");
    expect(problemWith({ FLOWLESS_API_URL: "https:u:TopSecret@flowless.example" }).message).toBe(err.message);
    expect(loadConfig({ FLOWLESS_API_URL: "https://flowless.example/" }).flowlessApiUrl).toBe("https://flowless.example");
    expect(loadConfig({ FLOWLESS_API_URL: "https://flowless.example/?tenant=a@b" }).flowlessApiUrl).toBe("https://flowless.example/?tenant=a@b");
  });

  it("does not echo a malformed DATABASE_URL (it may carry a password)", () => {
    const err = problemWith({ DATABASE_URL: "postgres//user:pa55word@db" });
    expect(err.message).toBe("DATABASE_URL: the value given is not a URL");
  });

  it("lists every bad value at once", () => {
    const err = problemWith({ PORT: "x", LOG_LEVEL: "loud", MIGRATE_ON_START: "maybe" });
    expect(err.problems.map((p) => p.variable)).toEqual(["PORT", "MIGRATE_ON_START", "LOG_LEVEL"]);
    expect(err.message.split("; ")).toHaveLength(3);
  });
});

describe("CONFIG_VARIABLES", () => {
  it("documents each variable once, with the defaults loadConfig uses", () => {
    const names = CONFIG_VARIABLES.map((v) => v.name);
    expect(new Set(names).size).toBe(names.length);
    // Every documented default is itself a valid value (ConfigError would be thrown otherwise).
    const env = Object.fromEntries(CONFIG_VARIABLES.filter((v) => v.default !== "").map((v) => [v.name, v.default]));
    expect(loadConfig(env)).toEqual(loadConfig({}));
  });

  it("renders a Markdown table for the README", () => {
    const table = describeConfig();
    for (const v of CONFIG_VARIABLES) expect(table).toContain(`| \`${v.name}\` |`);
  });
});

describe("embeddedDataDir", () => {
  it("takes a relative folder from where npm or pnpm was started, else from the working directory", () => {
    const config = loadConfig({});
    expect(embeddedDataDir(config, { INIT_CWD: "/srv/checkout" })).toBe("/srv/checkout/.data/postgres");
    expect(embeddedDataDir(config, {})).toBe(path.resolve(process.cwd(), ".data/postgres"));
    expect(embeddedDataDir(loadConfig({ EMBEDDED_PG_DIR: "/var/lib/ab" }), { INIT_CWD: "/srv/checkout" })).toBe("/var/lib/ab");
  });
});
