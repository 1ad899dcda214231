import type { DescService } from "@bufbuild/protobuf";
import { createClient, type CallOptions, type Client, type Transport } from "@connectrpc/connect";
import { AccountBalanceService } from "./gen/accountbalance/v1/account_balance_service_pb.js";
import { AccountBalanceAdminService } from "./gen/accountbalance/v1/account_balance_admin_service_pb.js";
import { authHeaders, type Auth } from "./auth.js";
import { AccountBalanceError } from "./errors.js";
import { newIdempotencyKey } from "./idempotency-key.js";
import { withRetry, type RetryOptions } from "./retry.js";

export interface ClientOptions {
  /** Credentials sent with every call. */
  readonly auth?: Auth;
  /** Deadline of each call (each attempt) unless the call sets its own `timeoutMs`. Default: none. */
  readonly timeoutMs?: number;
  /** Retries of credit and debit on UNAVAILABLE / DEADLINE_EXCEEDED; `false` turns them off. Default 3 attempts. */
  readonly retry?: RetryOptions | false;
}

/** Connect's call options (`timeoutMs`, `headers`, `signal`, …) plus this client's. */
export interface AccountBalanceCallOptions extends CallOptions {
  /** Credit / debit only: overrides the client's retry options for this call. */
  readonly retry?: RetryOptions | false;
}

/**
 * A Connect client whose methods take {@link AccountBalanceCallOptions} and fail only with
 * {@link AccountBalanceError}.
 */
export type TypedClient<S extends DescService> = {
  [M in keyof Client<S>]: Client<S>[M] extends (request: infer I, options?: CallOptions) => Promise<infer O>
    ? (request: I, options?: AccountBalanceCallOptions) => Promise<O>
    : never;
};

export type AccountBalanceServiceClient = TypedClient<typeof AccountBalanceService>;
export type AccountBalanceAdminServiceClient = TypedClient<typeof AccountBalanceAdminService>;

export interface AccountBalanceClients {
  /** accountbalance.v1.AccountBalanceService: balances, credits, debits, history, totals. */
  readonly balances: AccountBalanceServiceClient;
  /** accountbalance.v1.AccountBalanceAdminService: reads across users (admins and services). */
  readonly admin: AccountBalanceAdminServiceClient;
}

/** Methods that move money: they always carry an idempotency key, so they may be retried. */
const RETRIED = new Set(["creditBalance", "debitBalance"]);

/**
 * Clients of both services over any Connect transport (gRPC, Connect or gRPC-Web; Node or
 * browser). Every call gets the credentials and default deadline of `options`; credit and
 * debit get an idempotency key when the request has none, and are retried with it.
 */
export function createAccountBalanceClient(transport: Transport, options: ClientOptions = {}): AccountBalanceClients {
  return {
    balances: wrap(AccountBalanceService, transport, options),
    admin: wrap(AccountBalanceAdminService, transport, options),
  };
}

type UnaryFn = (request: Record<string, unknown>, options?: AccountBalanceCallOptions) => Promise<unknown>;

function wrap<S extends DescService>(service: S, transport: Transport, options: ClientOptions): TypedClient<S> {
  const raw = createClient(service, transport) as unknown as Record<string, UnaryFn>;
  const out: Record<string, UnaryFn> = {};
  for (const method of service.methods) {
    const call = raw[method.localName]!;
    const once = async (request: Record<string, unknown>, callOptions: AccountBalanceCallOptions = {}) => {
      const { retry: _retry, ...connectOptions } = callOptions;
      const headers = new Headers(connectOptions.headers);
      for (const [name, value] of Object.entries(await authHeaders(options.auth))) {
        if (!headers.has(name)) headers.set(name, value);
      }
      try {
        return await call(request, { ...connectOptions, headers, timeoutMs: connectOptions.timeoutMs ?? options.timeoutMs });
      } catch (err) {
        throw AccountBalanceError.from(err);
      }
    };
    out[method.localName] = RETRIED.has(method.localName)
      ? (request, callOptions) => {
          // The same key on every attempt: a retry of a request that did land returns its first
          // result. The caller's own key is kept, from the field or the Idempotency-Key header
          // (the server refuses the two when they differ); a message made with create() has
          // "" for "no key".
          const own = request["idempotencyKey"];
          const fromHeader = new Headers(callOptions?.headers).get("idempotency-key");
          const keyed = { ...request, idempotencyKey: typeof own === "string" && own !== "" ? own : (fromHeader ?? newIdempotencyKey()) };
          const retry = callOptions?.retry ?? options.retry;
          return withRetry(() => once(keyed, callOptions), retry, callOptions?.signal);
        }
      : once;
  }
  return out as unknown as TypedClient<S>;
}
