import { createHash, timingSafeEqual } from "node:crypto";
import type { Caller } from "./caller.js";

/** The caller a service token stands for: role `service`, which may do everything an admin may. */
export const SERVICE_CALLER: Readonly<Caller> = Object.freeze({
  kind: "service",
  userId: null,
  role: "service",
  isAdmin: true,
});

export interface ServiceTokens {
  /** The service caller when `token` is one of the configured tokens, else undefined. */
  match(token: string | undefined): Caller | undefined;
}

function digest(value: string): Buffer {
  return createHash("sha256").update(value, "utf8").digest();
}

/**
 * Matches bearer tokens against SERVICE_TOKENS. Both sides are hashed first so every comparison
 * is between 32-byte digests: neither a token's content nor its length leaks through timing.
 */
export function createServiceTokens(tokens: readonly string[]): ServiceTokens {
  const digests = tokens.filter((t) => t.length > 0).map(digest);
  return {
    match(token) {
      if (token === undefined || token.length === 0 || digests.length === 0) return undefined;
      const candidate = digest(token);
      let found = false;
      // No early exit: the time taken does not say which token matched.
      for (const known of digests) found = timingSafeEqual(known, candidate) || found;
      return found ? { ...SERVICE_CALLER } : undefined;
    },
  };
}
