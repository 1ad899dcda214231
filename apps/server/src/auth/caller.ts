import { createContextKey } from "@connectrpc/connect";

/** Who is calling, as established once per request by the auth interceptor. */
export interface Caller {
  /** "user": a session (flowless, local) or the trusted X-User-ID header; "service": a service token. */
  kind: "user" | "service";
  /** The session user's id; null for service callers. */
  userId: string | null;
  /** The session user's user_type, or "service". */
  role: string;
  /** Admin role (ACCOUNT_BALANCE_ADMIN_ROLES) or a service token: may act on any user's balances. */
  isAdmin: boolean;
}

/** Set by the auth interceptor on every account-balance RPC; handlers read it with ctx.values.get(callerKey). */
export const callerKey = createContextKey<Caller | undefined>(undefined, { description: "caller" });

/** The contract's user_id shape (1 to 128 printable ASCII characters, no spaces), and a role's. */
export const USER_ID_SHAPE = /^[!-~]{1,128}$/;
export const ROLE_SHAPE = /^[!-~]{1,64}$/;
