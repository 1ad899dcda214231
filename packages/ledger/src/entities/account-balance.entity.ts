import { defineEntity, type InferEntity } from "@mikro-orm/core";
import { BALANCE_STATUSES, BALANCE_TYPES } from "../domain.js";

// Columns, constraints and indexes are owned by the committed migrations; this schema maps them.
export const AccountBalance = defineEntity({
  name: "AccountBalance",
  tableName: "account_balances",
  properties: (p) => ({
    id: p.text().primary(),
    userId: p.text(),
    organizationId: p.text().nullable(),
    projectId: p.text().nullable(),
    customerId: p.text().nullable(),
    balanceType: p.enum([...BALANCE_TYPES]),
    balanceCents: p.bigint("bigint"),
    currency: p.character().length(3),
    referenceCode: p.text().nullable(),
    status: p.enum([...BALANCE_STATUSES]),
    expiresAt: p.datetime().nullable(),
    metadata: p.json<Record<string, string>>(),
    version: p.bigint("bigint"),
    /** Sequence of this balance's newest transaction (0: none yet); the next one is last + 1. */
    lastSequence: p.bigint("bigint"),
    createdAt: p.datetime(),
    updatedAt: p.datetime(),
  }),
});

export type AccountBalanceRecord = InferEntity<typeof AccountBalance>;
