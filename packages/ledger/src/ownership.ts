import type { FilterQuery } from "@mikro-orm/core";
import type { AccountBalanceRecord } from "./entities/account-balance.entity.js";

// The ownership rule: a caller restricted to `ownerId` sees a balance only if that user owns
// it, and anyone else's balance reads as not found rather than as forbidden. Here as SQL and
// as a MikroORM filter; the movement batch applies it to many balances at once, as pairs
// joined in its lock statement (`LOCK_BALANCES_SQL` in movement-batch.ts).

/** The balance `id` under the rule, as SQL; `alias` qualifies the columns (`b` for `b.id`). */
export function ownedBalance(id: string, ownerId: string | undefined, alias?: string): { sql: string; params: string[] } {
  const column = (name: string) => (alias ? `${alias}.${name}` : name);
  return ownerId === undefined
    ? { sql: `${column("id")} = ?`, params: [id] }
    : { sql: `${column("id")} = ? and ${column("user_id")} = ?`, params: [id, ownerId] };
}

/** The balance `id` under the rule, as a MikroORM filter. */
export function ownedBalanceFilter(id: string, ownerId: string | undefined): FilterQuery<AccountBalanceRecord> {
  return ownerId !== undefined ? { id, userId: ownerId } : { id };
}
