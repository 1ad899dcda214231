import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hashSessionToken, openLedger, type Ledger } from "./index.js";
import { createTestDatabase, type TestDatabase } from "./testing.js";
import { sql } from "./test-support/sql.js";

let db: TestDatabase;
let ledger: Ledger;

beforeAll(async () => {
  db = await createTestDatabase();
  ledger = await openLedger({ databaseUrl: db.url });
});

afterAll(async () => {
  await ledger?.close();
  await db?.drop();
});

describe("local sessions", () => {
  it("mints a random token, finds it, and stores only its hash", async () => {
    const before = Date.now();
    const minted = await ledger.sessions.mint({
      userId: "u-1",
      userType: "admin",
      email: "a@example.com",
      name: "Ada",
      ttlSeconds: 3600,
    });
    expect(minted.sessionId).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(minted.expiresAt.getTime()).toBeGreaterThanOrEqual(before + 3_600_000);

    expect(await ledger.sessions.find(minted.sessionId)).toEqual({
      userId: "u-1",
      userType: "admin",
      email: "a@example.com",
      name: "Ada",
      expiresAt: minted.expiresAt,
    });

    const rows = await sql<Record<string, unknown>>(db.url, "select * from sessions");
    expect(rows).toHaveLength(1);
    expect(rows[0]?.id).toBe(hashSessionToken(minted.sessionId));
    expect(JSON.stringify(rows)).not.toContain(minted.sessionId);

    const other = await ledger.sessions.mint({ userId: "u-2", userType: "customer", ttlSeconds: 60 });
    expect(other.sessionId).not.toBe(minted.sessionId);
    expect(await ledger.sessions.find(other.sessionId)).toMatchObject({ userId: "u-2", email: null, name: null });
  });

  it("returns null for unknown and malformed tokens", async () => {
    expect(await ledger.sessions.find("A".repeat(43))).toBeNull();
    expect(await ledger.sessions.find("not a token")).toBeNull();
    expect(await ledger.sessions.find("")).toBeNull();
  });

  it("revokes a session once", async () => {
    const { sessionId } = await ledger.sessions.mint({ userId: "u-3", userType: "customer", ttlSeconds: 600 });
    expect(await ledger.sessions.revoke(sessionId)).toBe(true);
    expect(await ledger.sessions.find(sessionId)).toBeNull();
    expect(await ledger.sessions.revoke(sessionId)).toBe(false);
    expect(await ledger.sessions.revoke("B".repeat(43))).toBe(false);
  });

  it("treats an expired session as unknown", async () => {
    const { sessionId } = await ledger.sessions.mint({ userId: "u-4", userType: "customer", ttlSeconds: 600 });
    await sql(db.url, "update sessions set expires_at = now() - interval '1 second' where id = $1", [
      hashSessionToken(sessionId),
    ]);
    expect(await ledger.sessions.find(sessionId)).toBeNull();
  });

  it("refuses a bad ttl", async () => {
    await expect(ledger.sessions.mint({ userId: "u", userType: "customer", ttlSeconds: 0 })).rejects.toMatchObject({
      reason: "VALIDATION_FAILED",
    });
  });
});
