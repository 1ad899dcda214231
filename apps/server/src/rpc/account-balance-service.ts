import { create, type JsonObject } from "@bufbuild/protobuf";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  AccountBalanceService,
  CloseBalanceRequestSchema,
  CloseBalanceResponseSchema,
  CreateBalanceRequestSchema,
  CreateBalanceResponseSchema,
  CreditBalanceRequestSchema,
  CreditBalanceResponseSchema,
  DebitBalanceRequestSchema,
  DebitBalanceResponseSchema,
  GetBalanceResponseSchema,
  GetBalanceStatisticsResponseSchema,
  GetMyTotalBalanceResponseSchema,
  ListBalanceTransactionsResponseSchema,
  ListMyBalancesResponseSchema,
  ListMyTransactionsResponseSchema,
  UpdateBalanceRequestSchema,
  UpdateBalanceResponseSchema,
} from "@account-balance/proto/accountbalance/v1/account_balance_service_pb.js";
import type { IdempotencyKey, Ledger } from "@account-balance/ledger";
import type { Caller } from "../auth/caller.js";
import { refusal } from "../errors.js";
import { balanceFilter, DEFAULT_BALANCE_LIMIT } from "./balance-filter.js";
import { callerOf, ownerScope, userOf } from "./caller.js";
import { idempotencyOf } from "./idempotency.js";
import {
  balanceStatusWord,
  balanceTypeWord,
  dateOf,
  pageMeta,
  pageOf,
  toBalance,
  toMovement,
  toStatistics,
  toTotal,
  toTransaction,
  transactionTypeWord,
} from "./records.js";

const notFound = () => refusal("NOT_FOUND", "balance not found");
const DEFAULT_TRANSACTION_LIMIT = 50;

/**
 * AccountBalanceService: ownership and role rules of spec section 2, in the spec's order
 * (input was validated by the interceptor; then visibility, then permission, then the ledger).
 */
export function accountBalanceService(ledger: Ledger): ServiceImpl<typeof AccountBalanceService> {
  return {
    async listMyBalances(req, ctx) {
      const userId = userOf(ctx);
      const page = pageOf(req, DEFAULT_BALANCE_LIMIT);
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
      // Input before permission (spec order), as for the key in the field.
      const idempotency = idempotencyOf(CreateBalanceRequestSchema, req, ctx, caller);
      if (!caller.isAdmin) {
        // Owners open empty, active balances for themselves; money only enters through the ledger.
        if (userId !== caller.userId) throw refusal("FORBIDDEN", "you may create balances only for yourself");
        if (req.balanceCents !== 0n) throw refusal("FORBIDDEN", "only admins may set an opening balance");
        if (status !== "active") throw refusal("FORBIDDEN", "only admins may choose the status");
      }
      const input = {
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
      };
      const row = await ledger.balances.create(input, { idempotency });
      return create(CreateBalanceResponseSchema, { data: toBalance(row) });
    },

    async updateBalance(req, ctx) {
      const caller = callerOf(ctx);
      const metadata = req.metadata === undefined ? undefined : stringMetadata(req.metadata);
      const idempotency = idempotencyOf(UpdateBalanceRequestSchema, req, ctx, caller);
      const scope = ownerScope(caller);
      // The ledger's update reads the balance through the owner filter (NOT_FOUND) before its
      // own checks; only a keyed owner's call needs it read first, before any replay.
      await visibleBeforeReplay(ledger, req.id, caller, idempotency);
      const status = balanceStatusWord(req.status);
      const expiresAt = req.clearExpiresAt ? null : dateOf(req.expiresAt);
      // Owners change metadata only; the ledger compares under the row lock, so a record sent
      // back unchanged but for its metadata passes, a real change of status or expiry does not.
      const row = await ledger.balances.update(req.id, { status, expiresAt, metadata }, { ...scope, idempotency, metadataOnly: !caller.isAdmin });
      return create(UpdateBalanceResponseSchema, { data: toBalance(row) });
    },

    async closeBalance(req, ctx) {
      const caller = callerOf(ctx);
      const idempotency = idempotencyOf(CloseBalanceRequestSchema, req, ctx, caller);
      await visibleBeforeReplay(ledger, req.id, caller, idempotency);
      const row = await ledger.balances.close(req.id, { ...ownerScope(caller), idempotency });
      return create(CloseBalanceResponseSchema, { data: toBalance(row) });
    },

    async creditBalance(req, ctx) {
      const caller = callerOf(ctx);
      const idempotency = idempotencyOf(CreditBalanceRequestSchema, req, ctx, caller);
      if (!caller.isAdmin) {
        await forbidAfterVisibility(ledger, req.id, ownerScope(caller), "only admins and services may credit a balance");
      }
      const result = await ledger.movements.credit({
        balanceId: req.id,
        amountCents: req.amountCents,
        description: req.description,
        referenceCode: req.referenceCode,
        metadata: req.metadata,
        idempotency,
      });
      return create(CreditBalanceResponseSchema, { data: toMovement(result) });
    },

    async debitBalance(req, ctx) {
      const caller = callerOf(ctx);
      const idempotency = idempotencyOf(DebitBalanceRequestSchema, req, ctx, caller);
      const scope = ownerScope(caller);
      if (req.allowNegative && !caller.isAdmin) {
        await forbidAfterVisibility(ledger, req.id, scope, "only admins and services may allow a negative balance");
      }
      await visibleBeforeReplay(ledger, req.id, caller, idempotency);
      const result = await ledger.movements.debit({
        balanceId: req.id,
        amountCents: req.amountCents,
        description: req.description,
        referenceCode: req.referenceCode,
        metadata: req.metadata,
        allowNegative: req.allowNegative,
        ...scope,
        idempotency,
      });
      return create(DebitBalanceResponseSchema, { data: toMovement(result) });
    },

    async getMyTotalBalance(req, ctx) {
      const total = await ledger.reads.totals(balanceFilter(userOf(ctx), req));
      return create(GetMyTotalBalanceResponseSchema, { data: toTotal(total) });
    },

    async listMyTransactions(req, ctx) {
      const userId = userOf(ctx);
      const page = pageOf(req, DEFAULT_TRANSACTION_LIMIT);
      const rows = await ledger.reads.listTransactions(
        { userId, currency: req.currency },
        transactionFilter(req),
        page,
      );
      return create(ListMyTransactionsResponseSchema, { data: rows.items.map(toTransaction), meta: pageMeta(page, rows.total) });
    },

    async listBalanceTransactions(req, ctx) {
      const page = pageOf(req, DEFAULT_TRANSACTION_LIMIT);
      const rows = await ledger.reads.listTransactions(
        { balanceId: req.id, ...ownerScope(callerOf(ctx)) },
        transactionFilter(req),
        page,
      );
      return create(ListBalanceTransactionsResponseSchema, {
        data: rows.items.map(toTransaction),
        meta: pageMeta(page, rows.total),
      });
    },

    async getBalanceStatistics(req, ctx) {
      const stats = await ledger.reads.statistics(req.id, { from: dateOf(req.from), to: dateOf(req.to) }, ownerScope(callerOf(ctx)));
      return create(GetBalanceStatisticsResponseSchema, { data: toStatistics(stats) });
    },
  };
}

/** The type and time window both transaction listings take. */
function transactionFilter(req: { transactionType: number; from?: Timestamp; to?: Timestamp }) {
  return { transactionType: transactionTypeWord(req.transactionType), from: dateOf(req.from), to: dateOf(req.to) };
}

/**
 * A stored result is replayed before the ledger looks the balance up, and keys are scoped to
 * the user, not to their rights: a user who debited or closed someone else's balance as an
 * admin, and is one no more (role changed, ADMIN_ROLES edited), must get NOT_FOUND for it, as
 * without a key, not the result. So an owner's keyed call sees the balance first (one read;
 * admins and services see every balance, and calls without a key look it up anyway).
 */
async function visibleBeforeReplay(ledger: Ledger, id: string, caller: Caller, idempotency: IdempotencyKey | undefined): Promise<void> {
  if (idempotency === undefined || caller.isAdmin) return;
  await requireVisible(ledger, id, ownerScope(caller));
}

/**
 * Visibility before permission (spec section 4): a balance the caller may not see is
 * NOT_FOUND, so a FORBIDDEN never tells anyone that another user's id exists.
 */
async function forbidAfterVisibility(ledger: Ledger, id: string, scope: { ownerId?: string }, message: string): Promise<never> {
  await requireVisible(ledger, id, scope);
  throw refusal("FORBIDDEN", message);
}

/** NOT_FOUND unless the balance is one the caller may see (spec order: visibility before permission). */
async function requireVisible(ledger: Ledger, id: string, scope: { ownerId?: string }): Promise<void> {
  if (!(await ledger.balances.get(id, scope))) throw notFound();
}

const MAX_METADATA_KEYS = 50;

/** UpdateBalance carries metadata as a Struct (to tell absent from empty); the ledger takes strings only. */
function stringMetadata(obj: JsonObject): Record<string, string> {
  const entries = Object.entries(obj);
  if (entries.length > MAX_METADATA_KEYS) {
    throw refusal("VALIDATION_FAILED", `metadata may have at most ${MAX_METADATA_KEYS} keys`);
  }
  const out: Array<[string, string]> = [];
  for (const [key, value] of entries) {
    // Characters as protovalidate counts them on create and credit (code points, not UTF-16 units).
    const keyLength = codePoints(key);
    if (keyLength < 1 || keyLength > 64) throw refusal("VALIDATION_FAILED", "metadata keys must be 1 to 64 characters");
    if (typeof value !== "string") throw refusal("VALIDATION_FAILED", `metadata value of "${key}" must be a string`);
    if (codePoints(value) > 1024) throw refusal("VALIDATION_FAILED", `metadata value of "${key}" is longer than 1024 characters`);
    out.push([key, value]);
  }
  // fromEntries defines own properties: a "__proto__" key stays data, as in a protobuf map.
  return Object.fromEntries(out);
}

function codePoints(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}
