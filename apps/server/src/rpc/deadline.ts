import { ConnectError, type Interceptor } from "@connectrpc/connect";

/**
 * Answers a call when its signal aborts (its deadline, REQUEST_TIMEOUT_MS or the client's,
 * passed; or the client went away), even while the implementation still waits on the
 * database: DEADLINE_EXCEEDED (REST 504) then, instead of whenever a row lock lets go. A call
 * whose deadline has already passed is not run. What the implementation does after the
 * answer is not waited for: a write may still take effect, as with any deadline, and the
 * caller's idempotency key tells.
 *
 * An interceptor, so that every way through (the unary invoker of the REST gateway and the
 * short path, and connect's own handlers: gRPC-Web, Connect GET) answers alike; placed inside
 * the metrics interceptor, so the answer given is the one counted.
 */
export function createDeadlineInterceptor(): Interceptor {
  return (next) => (req) => {
    const { signal } = req;
    if (signal.aborted) return Promise.reject(ConnectError.from(signal.reason));
    const work = next(req);
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        work.catch(() => {}); // its late failure is nobody's to handle now
        reject(ConnectError.from(signal.reason));
      };
      signal.addEventListener("abort", onAbort, { once: true });
      work.then(
        (res) => {
          signal.removeEventListener("abort", onAbort);
          resolve(res);
        },
        (err: unknown) => {
          signal.removeEventListener("abort", onAbort);
          reject(err);
        },
      );
    });
  };
}
