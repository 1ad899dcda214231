import { describe, expect, it } from "vitest";
import { isConnectionError, isPoolTimeout, toLedgerError } from "./db-errors.js";

describe("toLedgerError", () => {
  it("takes a pool that stayed full for an outage (UNAVAILABLE), not a bug, however it is wrapped", () => {
    // As MikroORM hands it on: knex's KnexTimeoutError inside a DriverException.
    const wrapped = Object.assign(new Error("Knex: Timeout acquiring a connection. The pool is probably full. Are you missing a .transacting(trx) call?"), {
      name: "DriverException",
    });
    const err = toLedgerError(wrapped);
    expect([err.reason, err.message]).toEqual(["UNAVAILABLE", "every database connection is busy, try again later"]);
    // Not a connection lost: a transaction does not wait for the pool again (3 × 10 s).
    expect(isConnectionError(wrapped)).toBe(false);
    expect(isPoolTimeout(wrapped)).toBe(true);
    expect(toLedgerError(Object.assign(new Error("Knex: Timeout acquiring a connection."), { name: "KnexTimeoutError" })).reason).toBe("UNAVAILABLE");
    expect(toLedgerError(Object.assign(new Error("something else"), { name: "DriverException" })).reason).toBe("INTERNAL");
  });
});
