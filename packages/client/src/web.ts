import type { Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { createAccountBalanceClient, type AccountBalanceClients, type ClientOptions } from "./client.js";

export * from "./index.js";

export interface WebClientOptions extends ClientOptions {
  /** The server, e.g. "https://api.example.com". */
  readonly baseUrl: string;
  /** "connect" (default) or "grpc-web". */
  readonly protocol?: "connect" | "grpc-web";
  /** Protobuf binary instead of JSON; default false for Connect, always binary for gRPC-Web. */
  readonly useBinaryFormat?: boolean;
  /** Extra Connect interceptors, run on every call. */
  readonly interceptors?: Interceptor[];
  /** A fetch of your own (default: globalThis.fetch). */
  readonly fetch?: typeof globalThis.fetch;
}

/** Clients of both services for browsers (and any runtime with fetch), over Connect or gRPC-Web. */
export function createWebClients(options: WebClientOptions): AccountBalanceClients {
  const { baseUrl, protocol = "connect", interceptors = [] } = options;
  const common = { baseUrl, interceptors, ...(options.fetch ? { fetch: options.fetch } : {}) };
  const transport =
    protocol === "grpc-web"
      ? createGrpcWebTransport({ ...common, useBinaryFormat: options.useBinaryFormat ?? true })
      : createConnectTransport({ ...common, useBinaryFormat: options.useBinaryFormat ?? false });
  return createAccountBalanceClient(transport, options);
}
