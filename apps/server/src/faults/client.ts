/**
 * The fault test's client: one credit or debit call over REST or Connect (JSON), with its
 * answer sorted into what a careful client must do next. A client that retries only what
 * the service told it to retry, with the same key, is what "exactly once" is promised to.
 */

export const REST_BASE = "/bridge-payment/account-balance";

export type MovementKind = "credit" | "debit";
export type Protocol = "rest" | "connect";

export interface MovementRequest {
  balanceId: string;
  kind: MovementKind;
  amountCents: number;
  /** Idempotency key; also written in the transaction's metadata (`op`) to find it again. */
  key: string;
}

export type Answer =
  /** Definite success: the service wrote (or had written) this transaction. */
  | { kind: "ok"; txnId: string; balanceAfter: number; status: number }
  /** Definite refusal: nothing was written for this request. */
  | { kind: "refused"; code: string; status: number }
  /** No definite answer (network error, timeout, 5xx, 429, a key still in flight): retry. */
  | { kind: "retry"; why: string };

const CONNECT_RETRY = new Set(["unavailable", "internal", "unknown", "deadline_exceeded", "resource_exhausted", "aborted"]);
const CONNECT_STATUS: Record<string, number> = {
  canceled: 499, unknown: 500, invalid_argument: 400, deadline_exceeded: 504, not_found: 404, already_exists: 409,
  permission_denied: 403, resource_exhausted: 429, failed_precondition: 400, aborted: 409, out_of_range: 400,
  unimplemented: 501, internal: 500, unavailable: 503, data_loss: 500, unauthenticated: 401,
};

interface ErrorInfoJson {
  type?: string;
  debug?: { reason?: string; metadata?: Record<string, string> };
}

export async function callMovement(
  baseUrl: string,
  protocol: Protocol,
  token: string,
  req: MovementRequest,
  timeoutMs: number,
): Promise<Answer> {
  const method = req.kind === "credit" ? "CreditBalance" : "DebitBalance";
  const url =
    protocol === "rest"
      ? `${baseUrl}${REST_BASE}/${req.balanceId}/${req.kind}`
      : `${baseUrl}/accountbalance.v1.AccountBalanceService/${method}`;
  const body =
    protocol === "rest"
      ? { amount_cents: req.amountCents, metadata: { op: req.key } }
      : { id: req.balanceId, amountCents: String(req.amountCents), metadata: { op: req.key }, idempotencyKey: req.key };
  const headers: Record<string, string> = { "content-type": "application/json", authorization: `Bearer ${token}` };
  if (protocol === "rest") headers["idempotency-key"] = req.key;

  let res: Response;
  let text: string;
  try {
    res = await fetch(url, { method: "POST", headers, body: JSON.stringify(body), signal: AbortSignal.timeout(timeoutMs) });
    text = await res.text();
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code;
    return { kind: "retry", why: `network:${cause ?? (err as Error).name}` };
  }
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    return res.status >= 500 || res.status === 429 ? { kind: "retry", why: `http:${res.status}` } : { kind: "refused", code: `HTTP_${res.status}`, status: res.status };
  }

  if (res.ok) {
    const data = (protocol === "rest" ? json.data : (json.data as Record<string, unknown> | undefined)) as
      | { transaction?: { id?: string }; balance?: { balance_cents?: number; balanceCents?: string } }
      | undefined;
    const txnId = data?.transaction?.id;
    const after = data?.balance?.balance_cents ?? Number(data?.balance?.balanceCents);
    if (!txnId) return { kind: "retry", why: "malformed-success" };
    return { kind: "ok", txnId, balanceAfter: Number(after), status: res.status };
  }

  if (protocol === "rest") {
    const code = typeof json.code === "string" ? json.code : `HTTP_${res.status}`;
    const details = (json.details ?? {}) as Record<string, unknown>;
    if (res.status >= 500 || res.status === 429 || res.status === 408) return { kind: "retry", why: `${res.status}:${code}` };
    if (code === "IDEMPOTENCY_KEY_REUSED" && details.state === "in_flight") return { kind: "retry", why: "409:in_flight" };
    return { kind: "refused", code, status: res.status };
  }

  const connectCode = typeof json.code === "string" ? json.code : "unknown";
  const info = ((json.details ?? []) as ErrorInfoJson[]).find((d) => d.type === "google.rpc.ErrorInfo")?.debug;
  const reason = info?.reason ?? connectCode.toUpperCase();
  const status = CONNECT_STATUS[connectCode] ?? res.status;
  if (CONNECT_RETRY.has(connectCode)) return { kind: "retry", why: `${status}:${reason}` };
  if (reason === "IDEMPOTENCY_KEY_REUSED" && info?.metadata?.state === "in_flight") return { kind: "retry", why: "409:in_flight" };
  return { kind: "refused", code: reason, status };
}

/** GET /readyz: the HTTP status, or 0 when nothing answers. */
export async function readyzStatus(baseUrl: string, timeoutMs = 4_000): Promise<number> {
  try {
    const res = await fetch(`${baseUrl}/readyz`, { signal: AbortSignal.timeout(timeoutMs) });
    await res.arrayBuffer();
    return res.status;
  } catch {
    return 0;
  }
}

/** Creates a balance as a service (opening balance written as an adjustment). */
export async function createBalance(baseUrl: string, token: string, userId: string, openingCents: number): Promise<string> {
  const res = await fetch(`${baseUrl}${REST_BASE}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify({ user_id: userId, balance_type: "credits", currency: "EUR", balance_cents: openingCents }),
    signal: AbortSignal.timeout(10_000),
  });
  const json = (await res.json()) as { success?: boolean; data?: { id?: string } };
  if (res.status !== 201 || !json.data?.id) throw new Error(`create balance answered ${res.status}: ${JSON.stringify(json)}`);
  return json.data.id;
}
