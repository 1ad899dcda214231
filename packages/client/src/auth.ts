import type { Interceptor } from "@connectrpc/connect";

/**
 * Credentials of every call. One of:
 * - `{ sessionId }`: a user's session, sent as `x-session-id`;
 * - `{ serviceToken }`: a service token (one of the server's SERVICE_TOKENS), sent as `authorization: Bearer`;
 * - `{ headers }`: a function returning headers, called before every attempt (e.g. to refresh a token).
 */
export type Auth =
  | { readonly sessionId: string }
  | { readonly serviceToken: string }
  | { readonly headers: () => Record<string, string> | Promise<Record<string, string>> };

/** The headers `auth` adds to a call. */
export async function authHeaders(auth: Auth | undefined): Promise<Record<string, string>> {
  if (auth === undefined) return {};
  if ("sessionId" in auth) return { "x-session-id": auth.sessionId };
  if ("serviceToken" in auth) return { authorization: `Bearer ${auth.serviceToken}` };
  return { ...(await auth.headers()) };
}

/**
 * A Connect interceptor that adds the credentials to every call of a transport. Headers the
 * caller set on a call win over it.
 */
export function createAuthInterceptor(auth: Auth): Interceptor {
  return (next) => async (req) => {
    for (const [name, value] of Object.entries(await authHeaders(auth))) {
      if (!req.header.has(name)) req.header.set(name, value);
    }
    return next(req);
  };
}
