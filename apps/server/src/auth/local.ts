import type { SessionProvider, SessionUser } from "./session.js";

/** A session row as the ledger's local session store returns it. */
export interface LocalSession {
  userId: string;
  userType: string;
  email?: string | null;
  name?: string | null;
  expiresAt: Date;
}

/** What the local provider needs from storage (the ledger's `sessions` fits). */
export interface LocalSessionStore {
  find(sessionId: string): Promise<LocalSession | null>;
}

/** Sessions kept in the service's own database (AUTH_PROVIDER=local): unknown or expired is invalid. */
export function createLocalProvider(store: LocalSessionStore, now: () => number = Date.now): SessionProvider {
  return {
    async validate(sessionId) {
      const session = await store.find(sessionId);
      if (session === null || session.expiresAt.getTime() <= now()) return null;
      const user: SessionUser = { userId: session.userId, userType: session.userType, expiresAt: session.expiresAt };
      if (session.email) user.email = session.email;
      if (session.name) user.name = session.name;
      return user;
    },
  };
}
