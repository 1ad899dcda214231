import { randomBytes } from "node:crypto";
import { callMovement, type Answer, type MovementKind, type MovementRequest, type Protocol } from "./client.js";

/**
 * A client workload: `workers` concurrent loops, each sending credits and debits with a fresh
 * idempotency key per operation, and retrying the SAME request with the SAME key (on the next
 * server, alternating protocols) until it gets a definite answer or its deadline passes.
 */

export interface Target {
  readonly baseUrl: string;
}

export interface WorkloadBalance {
  id: string;
  openingCents: number;
  /** Debits are more frequent and larger than the funds: INSUFFICIENT_BALANCE refusals happen. */
  tight: boolean;
}

export type Outcome = "acked" | "refused" | "unknown";

export interface Op extends MovementRequest {
  outcome: Outcome;
  txnId?: string;
  refusal?: string;
  attempts: number;
  /** Sent to two servers at once with the same key (a client that hedges or double-submits). */
  hedged: boolean;
  /** Disagreeing definite answers for one key (must never happen). */
  conflicts: string[];
  /** A hedged twin was refused while the other was acknowledged (allowed, see record()). */
  refusedThenAcked?: boolean;
}

export interface WorkloadOptions {
  targets: readonly Target[];
  token: string;
  balances: readonly WorkloadBalance[];
  workers: number;
  /** Per attempt. */
  attemptTimeoutMs: number;
  /** Per operation: past it the outcome stays unknown (resolved later by a replay). */
  opDeadlineMs: number;
  /** Share of operations sent to two servers at once. */
  hedgeRatio: number;
}

export interface AttemptStats {
  attempts: number;
  /** Retry reasons, e.g. "network:ECONNREFUSED", "503:UNAVAILABLE", "500:INTERNAL". */
  retries: Map<string, number>;
  /** Definite answers by protocol. */
  byProtocol: Record<Protocol, number>;
  /** Time of each definite success (ms since epoch), to see when service resumed. */
  ackTimes: number[];
}

export interface Workload {
  readonly ops: Op[];
  readonly stats: AttemptStats;
  /** Stops issuing new operations and waits for those in flight to end (definite or deadline). */
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(Math.random() * xs.length)]!;

export function startWorkload(opts: WorkloadOptions): Workload {
  const ops: Op[] = [];
  const stats: AttemptStats = { attempts: 0, retries: new Map(), byProtocol: { rest: 0, connect: 0 }, ackTimes: [] };
  let stopping = false;
  const runId = randomBytes(4).toString("hex");
  let seq = 0;

  const nextOp = (): Op => {
    const balance = pick(opts.balances);
    const debit = Math.random() < (balance.tight ? 0.6 : 0.4);
    const amountCents = 1 + Math.floor(Math.random() * (balance.tight ? 200 : 100));
    return {
      balanceId: balance.id,
      kind: (debit ? "debit" : "credit") as MovementKind,
      amountCents,
      key: `f-${runId}-${(seq++).toString(36)}`,
      outcome: "unknown",
      attempts: 0,
      hedged: Math.random() < opts.hedgeRatio,
      conflicts: [],
    };
  };

  const workers = Array.from({ length: opts.workers }, async (_, w) => {
    let turn = w;
    while (!stopping) {
      const op = nextOp();
      ops.push(op);
      if (op.hedged) {
        const [a, b] = await Promise.all([
          settle(op, opts, stats, turn, "rest"),
          settle(op, opts, stats, turn + 1, "connect"),
        ]);
        record(op, a);
        record(op, b);
      } else {
        record(op, await settle(op, opts, stats, turn, turn % 2 === 0 ? "rest" : "connect"));
      }
      turn += 1;
    }
  });

  return {
    ops,
    stats,
    async stop() {
      stopping = true;
      await Promise.all(workers);
    },
  };
}

/** Sends op until a definite answer or the deadline; every retry goes to the next target. */
export async function settle(
  op: Op,
  opts: Pick<WorkloadOptions, "targets" | "token" | "attemptTimeoutMs" | "opDeadlineMs">,
  stats: AttemptStats,
  firstTarget: number,
  firstProtocol: Protocol,
): Promise<Answer> {
  const deadline = Date.now() + opts.opDeadlineMs;
  let i = firstTarget;
  let protocol = firstProtocol;
  let backoff = 25;
  for (;;) {
    const target = opts.targets[i % opts.targets.length]!;
    op.attempts += 1;
    stats.attempts += 1;
    const answer = await callMovement(target.baseUrl, protocol, opts.token, op, opts.attemptTimeoutMs);
    if (answer.kind !== "retry") {
      stats.byProtocol[protocol] += 1;
      if (answer.kind === "ok") stats.ackTimes.push(Date.now());
      return answer;
    }
    stats.retries.set(answer.why, (stats.retries.get(answer.why) ?? 0) + 1);
    if (Date.now() + backoff >= deadline) return answer;
    await sleep(backoff + Math.random() * backoff);
    backoff = Math.min(backoff * 2, 500);
    i += 1;
    protocol = protocol === "rest" ? "connect" : "rest";
  }
}

/**
 * Folds one definite answer into the op. Two successes for one key must name the same
 * transaction. A refusal and a success for one key can both be true (money.md: refusals are
 * not stored, so a hedged twin may run after the refusal rolled back); the success wins.
 */
export function record(op: Op, answer: Answer): void {
  if (answer.kind === "retry") return;
  if (answer.kind === "ok") {
    if (op.outcome === "acked" && op.txnId !== answer.txnId) op.conflicts.push(`two transactions ${op.txnId} and ${answer.txnId}`);
    if (op.outcome === "refused") op.refusedThenAcked = true;
    op.outcome = "acked";
    op.txnId = answer.txnId;
    return;
  }
  if (op.outcome === "acked") {
    op.refusedThenAcked = true;
    return;
  }
  op.outcome = "refused";
  op.refusal = answer.code;
}
