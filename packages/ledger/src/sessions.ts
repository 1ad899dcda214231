import { createHash, randomBytes } from "node:crypto";
import { Session } from "./entities/session.entity.js";
import { inFork, type LedgerOrm } from "./orm.js";
import { invalid, optionalString, requireNonEmpty } from "./validate.js";

export interface MintSessionInput {
  userId: string;
  userType: string;
  email?: string | null;
  name?: string | null;
  ttlSeconds: number;
}

export interface MintedSession {
  /** The bearer token. Shown once; only its sha256 is stored. */
  sessionId: string;
  expiresAt: Date;
}

export interface SessionUser {
  userId: string;
  userType: string;
  email: string | null;
  name: string | null;
  expiresAt: Date;
}

export interface Sessions {
  mint(input: MintSessionInput): Promise<MintedSession>;
  /** null when unknown, revoked or expired. */
  find(sessionId: string): Promise<SessionUser | null>;
  /** true when a live session was revoked by this call. */
  revoke(sessionId: string): Promise<boolean>;
}

// 32 random bytes in base64url, no padding.
const TOKEN_PATTERN = /^[A-Za-z0-9_-]{43}$/;

export function hashSessionToken(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

export function createSessions(orm: LedgerOrm): Sessions {
  return {
    async mint(input) {
      const userId = requireNonEmpty(input.userId, "user_id");
      const userType = requireNonEmpty(input.userType, "user_type");
      const ttl = input.ttlSeconds;
      if (typeof ttl !== "number" || !Number.isSafeInteger(ttl) || ttl < 1) {
        throw invalid("ttl_seconds must be a positive integer", "ttl_seconds");
      }
      const sessionId = randomBytes(32).toString("base64url");
      const now = new Date();
      const expiresAt = new Date(now.getTime() + ttl * 1000);
      if (Number.isNaN(expiresAt.getTime())) throw invalid("ttl_seconds is too large", "ttl_seconds");
      await inFork(orm, async (em) => {
        em.create(Session, {
          id: hashSessionToken(sessionId),
          userId,
          userType,
          email: optionalString(input.email, "email"),
          name: optionalString(input.name, "name"),
          createdAt: now,
          expiresAt,
          revokedAt: null,
        });
        await em.flush();
      });
      return { sessionId, expiresAt };
    },

    async find(sessionId) {
      // Anything that cannot be one of our tokens is unknown; no need to ask the database.
      if (typeof sessionId !== "string" || !TOKEN_PATTERN.test(sessionId)) return null;
      const row = await inFork(orm, (em) =>
        em.findOne(Session, { id: hashSessionToken(sessionId), revokedAt: null, expiresAt: { $gt: new Date() } }),
      );
      if (!row) return null;
      return {
        userId: row.userId,
        userType: row.userType,
        email: row.email ?? null,
        name: row.name ?? null,
        expiresAt: row.expiresAt,
      };
    },

    async revoke(sessionId) {
      if (typeof sessionId !== "string" || !TOKEN_PATTERN.test(sessionId)) return false;
      const affected = await inFork(orm, (em) =>
        em.nativeUpdate(Session, { id: hashSessionToken(sessionId), revokedAt: null }, { revokedAt: new Date() }),
      );
      return affected > 0;
    },
  };
}
