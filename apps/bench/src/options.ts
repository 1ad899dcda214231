/** Command-line options of `pnpm bench`. */

export const SCENARIOS = ["debit", "hot", "mixed", "get", "list-1m", "list-1k", "total"] as const;
export type Scenario = (typeof SCENARIOS)[number];

export const SCENARIO_TITLES: Record<Scenario, string> = {
  debit: "DebitBalance on random balances (of 10,000)",
  hot: "DebitBalance on one hot balance",
  mixed: "Credit/Debit 50/50 with a fresh idempotency key each",
  get: "GetBalance on random balances",
  "list-1m": "ListBalanceTransactions newest 50, 1,000,000-transaction balance",
  "list-1k": "ListBalanceTransactions newest 50, 1,000-transaction balance",
  total: "GetMyTotalBalance, user with 1,000 balances",
};

/** Load generators. Node clients run in a forked process; the others are C programs from Debian. */
export const CLIENTS = ["grpc-js", "grpc-h2", "grpc-raw", "connect", "rest", "h2load-grpc", "h2load-rest", "wrk-connect", "wrk-rest"] as const;
export type Client = (typeof CLIENTS)[number];

export const CLIENT_PROTOCOL: Record<Client, Protocol> = {
  "grpc-js": "grpc",
  "grpc-h2": "grpc",
  "grpc-raw": "grpc",
  connect: "connect",
  rest: "rest",
  "h2load-grpc": "grpc",
  "h2load-rest": "rest",
  "wrk-connect": "connect",
  "wrk-rest": "rest",
};

export const PROTOCOLS = ["grpc", "connect", "rest"] as const;
export type Protocol = (typeof PROTOCOLS)[number];

export interface Sizes {
  /** Balances the debit, mixed and get scenarios pick from. */
  balances: number;
  /** Transactions of the big-history balance. */
  bigHistory: number;
  /** Transactions of the small-history balance. */
  smallHistory: number;
  /** Balances of the user GetMyTotalBalance sums. */
  userBalances: number;
}

export const FULL_SIZES: Sizes = { balances: 10_000, bigHistory: 1_000_000, smallHistory: 1_000, userBalances: 1_000 };
export const SMOKE_SIZES: Sizes = { balances: 1_000, bigHistory: 10_000, smallHistory: 1_000, userBalances: 100 };

export interface Options {
  durationSec: number;
  warmupSec: number;
  concurrency: number[];
  scenarios: Scenario[];
  clients: Client[];
  smoke: boolean;
  sizes: Sizes;
  databaseUrl: string;
  /** DB_POOL_MAX of the server; the baseline gets the same connection budget. */
  poolMax: number;
  /** Where results/<timestamp>.json goes. */
  resultsDir: string;
  /** Folder for the server's .cpuprofile (node --cpu-prof), when set. */
  cpuProfDir: string | undefined;
  /** Skip the pg baseline (ratios are then absent). */
  baseline: boolean;
}

const USAGE = `pnpm bench [options]
  --duration <s>            seconds per run (default 10; --smoke: 1)
  --warmup <s>              unmeasured seconds before each run (default 1; --smoke: 0.2)
  --concurrency <list>      e.g. 1,8,32,128 (default; --smoke: 8)
  --scenarios <list>        ${SCENARIOS.join(",")}
  --protocols <list>        ${PROTOCOLS.join(",")} (filters --clients)
  --clients <list>          ${CLIENTS.join(",")}
  --smoke                   CI mode: small seeds, 1 s per run, concurrency 8 (checks that it runs, not timings)
  --database-url <url>      default $DATABASE_URL or postgres://postgres@127.0.0.1:5432/bench (bench_smoke with --smoke)
  --pool-max <n>            server DB_POOL_MAX and the baseline's pool (default 10)
  --results <dir>           default bench/results
  --cpu-prof <dir>          run the server under node --cpu-prof, profiles into <dir>
  --no-baseline             skip the direct-pg baseline`;

function list<T extends string>(value: string, allowed: readonly T[], name: string): T[] {
  const items = value.split(",").map((s) => s.trim()).filter((s) => s !== "");
  for (const item of items) {
    if (!allowed.includes(item as T)) throw new Error(`--${name}: unknown "${item}" (one of ${allowed.join(", ")})`);
  }
  if (items.length === 0) throw new Error(`--${name}: empty list`);
  return items as T[];
}

function positive(value: string | undefined, name: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name}: expected a positive number, got ${value}`);
  return n;
}

export function parseOptions(argv: readonly string[], env: NodeJS.ProcessEnv, repoRoot: string): Options {
  const args = new Map<string, string>();
  const flags = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") continue;
    if (a === "--help" || a === "-h") throw new UsageError(USAGE);
    if (a === "--smoke" || a === "--no-baseline") {
      flags.add(a.slice(2));
      continue;
    }
    if (!a.startsWith("--")) throw new UsageError(`unexpected argument ${a}\n${USAGE}`);
    const eq = a.indexOf("=");
    if (eq > 0) args.set(a.slice(2, eq), a.slice(eq + 1));
    else {
      const v = argv[++i];
      if (v === undefined) throw new UsageError(`${a} needs a value\n${USAGE}`);
      args.set(a.slice(2), v);
    }
  }
  const known = ["duration", "warmup", "concurrency", "scenarios", "protocols", "clients", "database-url", "pool-max", "results", "cpu-prof"];
  for (const k of args.keys()) if (!known.includes(k)) throw new UsageError(`unknown option --${k}\n${USAGE}`);

  const smoke = flags.has("smoke");
  let clients = args.has("clients") ? list(args.get("clients")!, CLIENTS, "clients") : [...CLIENTS];
  if (args.has("protocols")) {
    const protocols = list(args.get("protocols")!, PROTOCOLS, "protocols");
    clients = clients.filter((c) => protocols.includes(CLIENT_PROTOCOL[c]));
  }
  const defaultDb = `postgres://postgres@127.0.0.1:5432/${smoke ? "bench_smoke" : "bench"}`;
  return {
    durationSec: args.has("duration") ? positive(args.get("duration"), "duration") : smoke ? 1 : 10,
    warmupSec: args.has("warmup") ? Number(args.get("warmup")) : smoke ? 0.2 : 1,
    concurrency: args.has("concurrency")
      ? args.get("concurrency")!.split(",").map((s) => Math.floor(positive(s, "concurrency")))
      : smoke
        ? [8]
        : [1, 8, 32, 128],
    scenarios: args.has("scenarios") ? list(args.get("scenarios")!, SCENARIOS, "scenarios") : [...SCENARIOS],
    clients,
    smoke,
    sizes: smoke ? SMOKE_SIZES : FULL_SIZES,
    databaseUrl: args.get("database-url") ?? env.DATABASE_URL ?? defaultDb,
    poolMax: args.has("pool-max") ? Math.floor(positive(args.get("pool-max"), "pool-max")) : 10,
    resultsDir: args.get("results") ?? `${repoRoot}bench/results`,
    cpuProfDir: args.get("cpu-prof"),
    baseline: !flags.has("no-baseline"),
  };
}

export class UsageError extends Error {}
