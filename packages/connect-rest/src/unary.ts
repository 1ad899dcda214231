import type { DescMessage, DescMethodUnary, DescService, MessageShape } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createServiceImplSpec,
  type ContextValues,
  type HandlerContext,
  type Interceptor,
  type MethodImplSpec,
  type ServiceImpl,
} from "@connectrpc/connect";
import { invokeUnaryImplementation } from "@connectrpc/connect/protocol";

/**
 * Runs a unary method's implementation through the app's interceptors, with a handler
 * context as connect builds one (see `handlerContext`) and connect's own invocation
 * (`invokeUnaryImplementation`): what a connect handler does between decoding a request and
 * encoding its response, without the streaming pipeline around it. Transports that already
 * hold the request message (the REST gateway, a plain unary gRPC call) use it instead of
 * re-encoding the message for a connect handler; that pipeline costs about 1 ms of CPU per
 * call on a small machine, more than most handlers.
 */
export interface UnaryCall {
  method: DescMethodUnary;
  message: MessageShape<DescMessage>;
  /** The caller's request headers, as the implementation and interceptors see them. */
  header: Headers;
  url: string;
  requestMethod: string;
  /** "grpc", "connect", "rest"...: HandlerContext.protocolName. */
  protocolName: string;
  contextValues: ContextValues;
  timeoutMs?: number;
  /**
   * The call's controller, which becomes the handler context's signal: the caller aborts it
   * when the client goes away; the invoker aborts it when the deadline passes and, with
   * `Canceled`, once the call is over.
   */
  abort: AbortController;
  /** Response headers and trailers the transport starts with (e.g. its content-type). */
  responseHeader?: Record<string, string>;
  responseTrailer?: Record<string, string>;
}

/**
 * The outcome of a call, never thrown: its message or its error, and the response headers
 * and trailers the implementation and interceptors set. Where an error's own metadata goes
 * is the transport's choice (gRPC: trailers; REST: headers).
 */
export type UnaryOutcome =
  | { message: MessageShape<DescMessage>; error?: undefined; header: Headers; trailer: Headers }
  | { message?: undefined; error: ConnectError; header: Headers; trailer: Headers };

export interface UnaryInvoker {
  /** The unary method served at `/<package.Service>/<Method>`, if it is implemented. */
  lookup(path: string): DescMethodUnary | undefined;
  invoke(call: UnaryCall): Promise<UnaryOutcome>;
}

/** A service and its implementation, as given to the connect router. */
export interface Implementation {
  readonly service: DescService;
  readonly impl: object;
}

/** Pairs a service with its implementation, typed as the router's `service()` types it. */
export function implementation<S extends DescService>(service: S, impl: Partial<ServiceImpl<S>>): Implementation {
  return { service, impl };
}

type UnarySpec = Extract<MethodImplSpec, { kind: "unary" }>;

// The context's abort reason once a call is over: without one, AbortController builds a
// DOMException (with a stack trace) for every call.
const CALL_FINISHED = new ConnectError("call finished", Code.Canceled);

/**
 * The handler context of one call, with the fields and signal semantics of connect's
 * `createHandlerContext` but lighter: connect copies the three header objects and links
 * three AbortControllers (deadline, caller, its own) with their listeners for every call.
 * Under load that was about a tenth of all the server allocated, and much of it was
 * promoted to the old generation, since a call outlives a scavenge. Here the caller's
 * controller is the context's and the deadline is one timer on it.
 */
function handlerContext(spec: UnarySpec, call: UnaryCall): { context: HandlerContext; done(): void } {
  const { abort, timeoutMs } = call;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let deadline: number | undefined;
  if (timeoutMs !== undefined) {
    deadline = Date.now() + timeoutMs;
    const expire = () => abort.abort(new ConnectError("the operation timed out", Code.DeadlineExceeded));
    if (timeoutMs <= 0) expire();
    else timer = setTimeout(expire, timeoutMs);
  }
  const context: HandlerContext = {
    method: spec.method,
    service: spec.method.parent,
    signal: abort.signal,
    timeoutMs: () => (deadline === undefined ? undefined : deadline - Date.now()),
    requestMethod: call.requestMethod,
    requestHeader: call.header,
    responseHeader: new Headers(call.responseHeader),
    responseTrailer: new Headers(call.responseTrailer),
    protocolName: call.protocolName,
    values: call.contextValues,
    url: call.url,
  };
  return {
    context,
    done() {
      clearTimeout(timer);
      abort.abort(CALL_FINISHED);
    },
  };
}

/** `implementations`: the same service implementations the connect router serves. */
export function createUnaryInvoker(
  implementations: readonly Implementation[],
  interceptors: Interceptor[],
): UnaryInvoker {
  const byPath = new Map<string, UnarySpec>();
  const byMethod = new Map<DescMethodUnary, UnarySpec>();
  for (const { service, impl } of implementations) {
    const specs = createServiceImplSpec(service, impl as never);
    for (const spec of Object.values(specs.methods)) {
      if (spec.kind !== "unary") continue;
      byPath.set(`/${service.typeName}/${spec.method.name}`, spec);
      byMethod.set(spec.method, spec);
    }
  }
  return {
    lookup: (path) => byPath.get(path)?.method,
    async invoke(call) {
      const spec = byMethod.get(call.method);
      if (!spec) throw new Error(`${call.method.parent.typeName}.${call.method.name} has no unary implementation here`);
      const { context, done } = handlerContext(spec, call);
      try {
        const message = await invokeUnaryImplementation(spec, context, call.message, interceptors);
        return { message, header: context.responseHeader, trailer: context.responseTrailer };
      } catch (err) {
        // As connect's handlers: anything but a ConnectError leaves as a bare INTERNAL.
        const error = err instanceof ConnectError ? err : new ConnectError("internal error", Code.Internal, undefined, undefined, err);
        return { error, header: context.responseHeader, trailer: context.responseTrailer };
      } finally {
        done();
      }
    },
  };
}
