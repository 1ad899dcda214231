/**
 * The ownership rule as SQL: the balance `id`, and, when `ownerId` is given, only if that user
 * owns it, so that anyone else's balance reads as not found rather than as forbidden.
 * `alias` qualifies the columns (`b` for `b.id`).
 */
export function ownedBalance(id: string, ownerId: string | undefined, alias?: string): { sql: string; params: string[] } {
  const column = (name: string) => (alias ? `${alias}.${name}` : name);
  return ownerId === undefined
    ? { sql: `${column("id")} = ?`, params: [id] }
    : { sql: `${column("id")} = ? and ${column("user_id")} = ?`, params: [id, ownerId] };
}
