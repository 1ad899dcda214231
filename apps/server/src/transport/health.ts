import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { clip, MAX_DETAIL_CHARS } from "../errors.js";
import {
  Health,
  HealthCheckResponseSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
  type HealthCheckResponse,
} from "@account-balance/proto/grpc/health/v1/health_pb.js";

/**
 * grpc.health.v1.Health (https://github.com/grpc/grpc/blob/master/doc/health-checking.md)
 * over a status function, so load balancers and `grpc_health_probe` see the same readiness
 * as GET /readyz. Service "" is the server as a whole.
 */

export type HealthStatus = "SERVING" | "NOT_SERVING" | "SERVICE_UNKNOWN";
/** `watching`: asked by a Watch stream's poll, which may be answered from a recent check. */
export type HealthCheck = (service: string, how: { watching: boolean }) => Promise<HealthStatus>;

export interface HealthOptions {
  /** How often Watch re-evaluates the status. Default 1000 ms. */
  pollMs?: number;
  /** Services reported by List, besides "". Default none. */
  services?: readonly string[];
}

const STATUS: Record<HealthStatus, ServingStatus> = {
  SERVING: ServingStatus.SERVING,
  NOT_SERVING: ServingStatus.NOT_SERVING,
  SERVICE_UNKNOWN: ServingStatus.SERVICE_UNKNOWN,
};

export function registerHealth(router: ConnectRouter, check: HealthCheck, options: HealthOptions = {}): void {
  const pollMs = options.pollMs ?? 1000;
  // A failing check means "not serving"; its error is internal and never sent.
  const status = async (service: string, watching = false): Promise<HealthStatus> => {
    try {
      return await check(service, { watching });
    } catch {
      return "NOT_SERVING";
    }
  };
  const response = (s: HealthStatus): HealthCheckResponse => create(HealthCheckResponseSchema, { status: STATUS[s] });

  router.service(Health, {
    async check(req) {
      const s = await status(req.service);
      // The spec: Check on an unknown service fails with NOT_FOUND.
      if (s === "SERVICE_UNKNOWN") throw new ConnectError(`unknown service ${clip(req.service, MAX_DETAIL_CHARS)}`, Code.NotFound);
      return response(s);
    },

    // The current status at once, then each change, until the client goes away. An unknown
    // service is SERVICE_UNKNOWN and the call stays open, as the spec asks.
    async *watch(req, context) {
      const signal = context.signal;
      let last: HealthStatus | undefined;
      while (!signal.aborted) {
        const s = await status(req.service, true);
        if (s !== last) {
          last = s;
          yield response(s);
        }
        await sleep(pollMs, signal);
      }
    },

    async list() {
      const names = ["", ...(options.services ?? []).filter((s) => s !== "")];
      const statuses: Record<string, HealthCheckResponse> = {};
      for (const name of names) {
        const s = await status(name);
        if (s !== "SERVICE_UNKNOWN") statuses[name] = response(s);
      }
      return { statuses };
    },
  });
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
