import { describe, expect, it } from "vitest";
import { newBalanceId, newTransactionId } from "./ids.js";

describe("ids", () => {
  it("are prefixed ULIDs, unique and increasing in mint order", () => {
    const ids = Array.from({ length: 20_000 }, (_, i) => (i % 2 ? newTransactionId() : newBalanceId()).slice(4));
    for (const id of ids) expect(id).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/);
    expect(new Set(ids).size).toBe(ids.length);
    for (let i = 1; i < ids.length; i++) expect(ids[i]! > ids[i - 1]!).toBe(true);
  });

  it("random parts use the whole alphabet (the pooled CSPRNG is not stuck or biased to a few letters)", async () => {
    const seen = new Map<string, number>();
    // One id per millisecond, so each gets fresh randomness rather than an increment.
    for (let i = 0; i < 40; i++) {
      for (const c of newTransactionId().slice(4 + 10)) seen.set(c, (seen.get(c) ?? 0) + 1);
      await new Promise((r) => setTimeout(r, 2));
    }
    expect(seen.size).toBe(32);
  });
});
