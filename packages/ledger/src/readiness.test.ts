import { describe, expect, it } from "vitest";
import { sharedReadiness } from "./ledger.js";
import type { Readiness } from "./ledger.js";

// Readiness is asked without credentials (probes, Health/Check, one poll a second per open
// Health/Watch stream); each real check is a transaction on the movements' pool.
describe("sharedReadiness", () => {
  it("runs one check for every caller while it is in flight, reuses its answer for reuseMs, then checks again", async () => {
    let clock = 0;
    let checks = 0;
    let answer: Readiness = { ok: true };
    const ready = sharedReadiness(
      async () => {
        checks += 1;
        await new Promise((r) => setTimeout(r, 10));
        return answer;
      },
      1000,
      () => clock,
    );
    const all = await Promise.all(Array.from({ length: 100 }, () => ready()));
    expect(checks).toBe(1);
    expect(all.every((r) => r.ok)).toBe(true);

    answer = { ok: false, detail: "database unreachable" };
    clock += 999;
    expect(await ready()).toEqual({ ok: true });
    expect(checks).toBe(1);
    clock += 1;
    expect(await ready()).toEqual({ ok: false, detail: "database unreachable" });
    expect(checks).toBe(2);
  });
});
