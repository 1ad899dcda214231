import { create, type JsonObject } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  AccountBalanceService,
  CloseBalanceResponseSchema,
  CreateBalanceResponseSchema,
  GetBalanceResponseSchema,
  ListMyBalancesResponseSchema,
  UpdateBalanceResponseSchema,
} from "@account-balance/proto/accountbalance/v1/account_balance_service_pb.js";
import type { Ledger } from "@account-balance/ledger";
import { refusal } from "../errors.js";
import { balanceFilter, DEFAULT_BALANCE_LIMIT } from "./balance-filter.js";
import { callerOf, ownerScope, userOf } from "./caller.js";
import { balanceStatusWord, balanceTypeWord, dateOf, pageMeta, toBalance } from "./records.js";

const notFound = () => refusal("NOT_FOUND", "balance not found");

/**
 * AccountBalanceService: ownership and role rules of spec section 2, in the spec's order
 * (input was validated by the interceptor; then visibility, then permission, then the ledger).
 */
export function accountBalanceService(ledger: Ledger): Partial<ServiceImpl<typeof AccountBalanceService>> {
  return {
    async listMyBalances(req, ctx) {
      const userId = userOf(ctx);
      const page = { limit: req.limit ?? DEFAULT_BALANCE_LIMIT, page: req.page ?? 1 };
      const rows = await ledger.balances.list(balanceFilter(userId, req), page);
      return create(ListMyBalancesResponseSchema, { data: rows.items.map(toBalance), meta: pageMeta(page, rows.total) });
    },

    async getBalance(req, ctx) {
      const row = await ledger.balances.get(req.id, ownerScope(callerOf(ctx)));
      if (!row) throw notFound();
      return create(GetBalanceResponseSchema, { data: toBalance(row) });
    },

    async createBalance(req, ctx) {
      const caller = callerOf(ctx);
      const userId = req.userId ?? caller.userId;
      if (userId === null) throw refusal("VALIDATION_FAILED", "user_id is required for service callers");
      const status = balanceStatusWord(req.status) ?? "active";
      if (!caller.isAdmin) {
        // Owners open empty, active balances for themselves; money only enters through the ledger.
        if (userId !== caller.userId) throw refusal("FORBIDDEN", "you may create balances only for yourself");
        if (req.balanceCents !== 0n) throw refusal("FORBIDDEN", "only admins may set an opening balance");
        if (status !== "active") throw refusal("FORBIDDEN", "only admins may choose the status");
      }
      const row = await ledger.balances.create({
        userId,
        organizationId: req.organizationId,
        projectId: req.projectId,
        customerId: req.customerId,
        balanceType: balanceTypeWord(req.balanceType) ?? "general",
        balanceCents: req.balanceCents,
        currency: req.currency ?? "USD",
        referenceCode: req.referenceCode,
        expiresAt: dateOf(req.expiresAt),
        status,
        metadata: req.metadata,
      });
      return create(CreateBalanceResponseSchema, { data: toBalance(row) });
    },

    async updateBalance(req, ctx) {
      const caller = callerOf(ctx);
      const metadata = req.metadata === undefined ? undefined : stringMetadata(req.metadata);
      const scope = ownerScope(caller);
      if (!(await ledger.balances.get(req.id, scope))) throw notFound();
      const status = balanceStatusWord(req.status);
      const expiresAt = dateOf(req.expiresAt);
      if (!caller.isAdmin && (status !== undefined || expiresAt !== undefined)) {
        throw refusal("FORBIDDEN", "owners may change metadata only");
      }
      const row = await ledger.balances.update(req.id, { status, expiresAt, metadata }, scope);
      return create(UpdateBalanceResponseSchema, { data: toBalance(row) });
    },

    async closeBalance(req, ctx) {
      const row = await ledger.balances.close(req.id, ownerScope(callerOf(ctx)));
      return create(CloseBalanceResponseSchema, { data: toBalance(row) });
    },
  };
}

const MAX_METADATA_KEYS = 50;

/** UpdateBalance carries metadata as a Struct (to tell absent from empty); the ledger takes strings only. */
function stringMetadata(obj: JsonObject): Record<string, string> {
  const entries = Object.entries(obj);
  if (entries.length > MAX_METADATA_KEYS) {
    throw refusal("VALIDATION_FAILED", `metadata may have at most ${MAX_METADATA_KEYS} keys`);
  }
  const out: Record<string, string> = {};
  for (const [key, value] of entries) {
    if (key.length < 1 || key.length > 64) throw refusal("VALIDATION_FAILED", "metadata keys must be 1 to 64 characters");
    if (typeof value !== "string") throw refusal("VALIDATION_FAILED", `metadata value of "${key}" must be a string`);
    if (value.length > 1024) throw refusal("VALIDATION_FAILED", `metadata value of "${key}" is longer than 1024 characters`);
    out[key] = value;
  }
  return out;
}
