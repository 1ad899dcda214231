import { defineEntity, type InferEntity } from "@mikro-orm/core";

// Sessions of the `local` auth provider. `id` is sha256(token) in hex: a database
// dump never yields a usable session token.
export const Session = defineEntity({
  name: "Session",
  tableName: "sessions",
  properties: (p) => ({
    id: p.text().primary(),
    userId: p.text(),
    userType: p.text(),
    email: p.text().nullable(),
    name: p.text().nullable(),
    createdAt: p.datetime(),
    expiresAt: p.datetime(),
    revokedAt: p.datetime().nullable(),
  }),
});

export type SessionRow = InferEntity<typeof Session>;
