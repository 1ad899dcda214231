import type { HandlerContext } from "@connectrpc/connect";
import { callerKey, type Caller } from "../auth/caller.js";
import { refusal } from "../errors.js";

/** The caller the auth interceptor established; every guarded RPC has one. */
export function callerOf(ctx: HandlerContext): Caller {
  const caller = ctx.values.get(callerKey);
  if (!caller) throw refusal("UNAUTHENTICATED", "authentication required");
  return caller;
}

/** "me" routes need a user; a service token has none. */
export function userOf(ctx: HandlerContext): string {
  const caller = callerOf(ctx);
  if (caller.userId === null) {
    throw refusal("VALIDATION_FAILED", "a service caller has no balances of its own - use the admin service with a user_id");
  }
  return caller.userId;
}

/** Admins and services see every balance; anyone else only their own. */
export function ownerScope(caller: Caller): { ownerId?: string } {
  return caller.isAdmin ? {} : { ownerId: caller.userId ?? "" };
}
