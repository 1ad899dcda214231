import { defineEntity, type InferEntity } from "@mikro-orm/core";
import { TRANSACTION_TYPES } from "../domain.js";
import { AccountBalance } from "./account-balance.entity.js";

// Rows are append-only (a trigger refuses UPDATE and DELETE); the ORM only ever inserts them.
export const AccountTransaction = defineEntity({
  name: "AccountTransaction",
  tableName: "account_transactions",
  properties: (p) => ({
    id: p.text().primary(),
    // A relation mapped to its key: records stay flat, and the unit of work still
    // knows to insert the balance before its opening transaction.
    accountBalanceId: p.manyToOne(AccountBalance).mapToPk().fieldName("account_balance_id"),
    /** The balance's owner; the database copies it from the balance on insert. */
    userId: p.text(),
    transactionType: p.enum([...TRANSACTION_TYPES]),
    amountCents: p.bigint("bigint"),
    balanceBeforeCents: p.bigint("bigint"),
    balanceAfterCents: p.bigint("bigint"),
    currency: p.character().length(3),
    description: p.text().nullable(),
    referenceCode: p.text().nullable(),
    status: p.text(),
    metadata: p.json<Record<string, string>>(),
    createdAt: p.datetime(),
    sequence: p.bigint("bigint"),
  }),
});

export type AccountTransactionRecord = InferEntity<typeof AccountTransaction>;
