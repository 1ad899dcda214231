/** The parts of a request that can carry a credential (Connect's interceptor request fits). */
export interface CredentialSource {
  header: Headers;
  /** The request URL as received; its query string is kept by the REST gateway and Connect GET. */
  url?: string;
}

export type SessionIdSource = "header" | "bearer" | "query" | "cookie";

export interface FoundSessionId {
  sessionId: string;
  from: SessionIdSource;
}

/** The token of `Authorization: Bearer <token>`, the carrier of both session ids and service tokens. */
export function bearerToken(header: Headers): string | undefined {
  return bearerTokenOf(header.get("authorization") ?? undefined);
}

/** The token of an `Authorization` header's value `Bearer <token>` (one word), else undefined. */
export function bearerTokenOf(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  return /^\s*bearer\s+(\S+)\s*$/i.exec(value)?.[1];
}

/** Whether `Authorization` names the Bearer scheme, readable or not. */
function hasBearerScheme(header: Headers): boolean {
  return /^\s*bearer(\s|$)/i.test(header.get("authorization") ?? "");
}

function queryParam(url: string | undefined, name: string): string | undefined {
  if (url === undefined || !url.includes("?")) return undefined;
  let value: string | null;
  try {
    // A relative URL (a path) is fine too: the base is only there to make it parseable.
    value = new URL(url, "http://localhost").searchParams.get(name);
  } catch {
    return undefined;
  }
  return nonBlank(value);
}

function cookie(header: Headers, name: string): string | undefined {
  const raw = header.get("cookie");
  if (raw === null) return undefined;
  for (const part of raw.split(";")) {
    const eq = part.indexOf("=");
    if (eq < 0 || part.slice(0, eq).trim() !== name) continue;
    let value = part.slice(eq + 1).trim();
    if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) value = value.slice(1, -1);
    try {
      value = decodeURIComponent(value);
    } catch {
      // Not percent-encoded after all: take it as it came.
    }
    return nonBlank(value);
  }
  return undefined;
}

function nonBlank(value: string | null | undefined): string | undefined {
  const trimmed = value?.trim();
  return trimmed ? trimmed : undefined;
}

/**
 * The session id in the spec's order (section 5): header `X-Session-ID`, `Authorization: Bearer`,
 * query `session_id`, cookie `session_id`. The first source present wins, even if a later one differs.
 */
export function findSessionId(req: CredentialSource): FoundSessionId | undefined {
  const header = nonBlank(req.header.get("x-session-id"));
  if (header !== undefined) return { sessionId: header, from: "header" };
  // A Bearer header is the credential even when it cannot be read ("Bearer", "Bearer a b"):
  // then its id is "", which no session has, and the query or cookie behind it is not asked.
  if (hasBearerScheme(req.header)) return { sessionId: bearerToken(req.header) ?? "", from: "bearer" };
  const query = queryParam(req.url, "session_id");
  if (query !== undefined) return { sessionId: query, from: "query" };
  const fromCookie = cookie(req.header, "session_id");
  if (fromCookie !== undefined) return { sessionId: fromCookie, from: "cookie" };
  return undefined;
}
