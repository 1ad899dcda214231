import { describe, expect, it } from "vitest";
import { createServiceTokens } from "./service-tokens.js";

describe("service tokens", () => {
  it("matches configured tokens only, as the service caller", () => {
    const tokens = createServiceTokens(["first-token-aaaaaaaaaaaaaaaaaaaaaaaaaaaa", "second"]);
    expect(tokens.match("second")).toEqual({ kind: "service", userId: null, role: "service", isAdmin: true });
    expect(tokens.match("first-token-aaaaaaaaaaaaaaaaaaaaaaaaaaaa")?.role).toBe("service");
    expect(tokens.match("secon")).toBeUndefined();
    expect(tokens.match("second ")).toBeUndefined();
    expect(tokens.match("")).toBeUndefined();
    expect(tokens.match(undefined)).toBeUndefined();
  });

  it("never matches anything when none are configured, not even an empty token", () => {
    const tokens = createServiceTokens(["", ""]);
    expect(tokens.match("")).toBeUndefined();
    expect(tokens.match("x")).toBeUndefined();
  });
});
