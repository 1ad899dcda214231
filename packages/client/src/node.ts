import type { Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { createAccountBalanceClient, type AccountBalanceClients, type ClientOptions } from "./client.js";

export * from "./index.js";

export interface NodeClientOptions extends ClientOptions {
  /** The server, e.g. "http://localhost:8080". */
  readonly baseUrl: string;
  /** "grpc" (HTTP/2, default) or "connect". */
  readonly protocol?: "grpc" | "connect";
  /** Connect only: "1.1" (default) or "2". gRPC is always HTTP/2. */
  readonly httpVersion?: "1.1" | "2";
  /** Connect only: protobuf binary instead of JSON (gRPC is always binary). Default false. */
  readonly useBinaryFormat?: boolean;
  /** Extra Connect interceptors, run on every call. */
  readonly interceptors?: Interceptor[];
}

export interface NodeClients extends AccountBalanceClients {
  /** Closes the HTTP/2 connection (idle connections never keep the process alive anyway). */
  close(): void;
}

/** Clients of both services for Node, over gRPC (HTTP/2) or Connect. */
export function createNodeClients(options: NodeClientOptions): NodeClients {
  const { baseUrl, protocol = "grpc", httpVersion = "1.1", useBinaryFormat = false, interceptors = [] } = options;
  let session: Http2SessionManager | undefined;
  let transport;
  if (protocol === "grpc") {
    session = new Http2SessionManager(baseUrl);
    transport = createGrpcTransport({ baseUrl, interceptors, sessionManager: session });
  } else if (httpVersion === "2") {
    session = new Http2SessionManager(baseUrl);
    transport = createConnectTransport({ baseUrl, interceptors, httpVersion, useBinaryFormat, sessionManager: session });
  } else {
    transport = createConnectTransport({ baseUrl, interceptors, httpVersion, useBinaryFormat });
  }
  return {
    ...createAccountBalanceClient(transport, options),
    close: () => session?.abort(),
  };
}
