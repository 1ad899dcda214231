/** A validated session's user, whichever provider vouched for it. */
export interface SessionUser {
  userId: string;
  /** The user's user_type: the role the module checks. */
  userType: string;
  email?: string;
  name?: string;
  /** When the session stops being valid; absent when the provider did not say. */
  expiresAt?: Date;
}

/** Validates a session id: a user, or null when the session is unknown, revoked or expired. */
export interface SessionProvider {
  /** Resolves null for an invalid session; rejects (a ConnectError UNAVAILABLE) when it cannot tell. */
  validate(sessionId: string): Promise<SessionUser | null>;
}

/** Where auth code writes its few operational messages; `console` fits. */
export interface AuthLog {
  warn(message: string, fields?: Record<string, unknown>): void;
}

/** Session ids and tokens are credentials: logs get at most a recognisable prefix. */
export function redact(secret: string): string {
  return secret.length <= 6 ? "…" : `${secret.slice(0, 6)}…`;
}
