import { describe, expect, it } from "vitest";
import { createLocalProvider, type LocalSession } from "./local.js";

describe("local provider", () => {
  const rows = new Map<string, LocalSession>([
    ["live", { userId: "u1", userType: "admin", email: "a@x.io", name: null, expiresAt: new Date(Date.now() + 60_000) }],
    ["dead", { userId: "u2", userType: "customer", expiresAt: new Date(Date.now() - 1) }],
  ]);
  const provider = createLocalProvider({ find: async (id) => rows.get(id) ?? null });

  it("returns the user of a live session", async () => {
    expect(await provider.validate("live")).toEqual({
      userId: "u1",
      userType: "admin",
      email: "a@x.io",
      expiresAt: rows.get("live")?.expiresAt,
    });
  });

  it("treats unknown and expired sessions as invalid", async () => {
    expect(await provider.validate("nope")).toBeNull();
    expect(await provider.validate("dead")).toBeNull();
  });
});
