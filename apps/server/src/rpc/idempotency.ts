import { createHash } from "node:crypto";
import { toJson, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import type { HandlerContext } from "@connectrpc/connect";
import type { IdempotencyKey } from "@account-balance/ledger";
import { refusal } from "../errors.js";
import type { Caller } from "../auth/caller.js";

const HEADER = "idempotency-key";
const KEY_SHAPE = /^[!-~]{1,255}$/;

/**
 * The idempotency key of a mutating call (spec section 6): the `idempotency_key` field, or
 * the `Idempotency-Key` header (REST; also gRPC metadata). Keys are scoped to the caller,
 * and the fingerprint is a digest of the request without its key, so the same key with a
 * different request is told apart.
 */
export function idempotencyOf<Desc extends DescMessage>(
  schema: Desc,
  req: MessageShape<Desc> & { idempotencyKey?: string },
  ctx: HandlerContext,
  caller: Caller,
): IdempotencyKey | undefined {
  const header = ctx.requestHeader.get(HEADER) ?? undefined;
  if (header !== undefined && !KEY_SHAPE.test(header)) {
    throw refusal("VALIDATION_FAILED", "Idempotency-Key must be 1 to 255 printable characters without spaces");
  }
  if (header !== undefined && req.idempotencyKey !== undefined && header !== req.idempotencyKey) {
    throw refusal("VALIDATION_FAILED", "Idempotency-Key header and idempotency_key differ");
  }
  const key = req.idempotencyKey ?? header;
  if (key === undefined) return undefined;
  const scope = caller.kind === "service" ? "service" : `user:${caller.userId}`;
  return { scope, key, fingerprint: fingerprint(schema, req) };
}

function fingerprint<Desc extends DescMessage>(schema: Desc, req: MessageShape<Desc>): string {
  const json = toJson(schema, req) as Record<string, unknown>;
  delete json.idempotencyKey;
  return createHash("sha256").update(`${schema.typeName}\n${canonical(json)}`).digest("hex");
}

/** JSON with object keys sorted, so that map order does not change the digest. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}
