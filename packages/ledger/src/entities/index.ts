export { AccountBalance, type AccountBalanceRecord } from "./account-balance.entity.js";
export { AccountTransaction, type AccountTransactionRecord } from "./account-transaction.entity.js";
export { Session, type SessionRow } from "./session.entity.js";

import { AccountBalance } from "./account-balance.entity.js";
import { AccountTransaction } from "./account-transaction.entity.js";
import { Session } from "./session.entity.js";

export const entities = [AccountBalance, AccountTransaction, Session];
