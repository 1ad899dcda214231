import { describe, expect, it } from "vitest";
import { Code } from "@connectrpc/connect";
import { clip, reasonOf, refusal } from "./errors.js";

describe("refusal", () => {
  it("bounds the message and the details it carries", () => {
    const err = refusal("VALIDATION_FAILED", "m".repeat(5_000), { field: "f".repeat(5_000) });
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toHaveLength(1_000);
    expect(err.rawMessage.endsWith("…")).toBe(true);
    expect(reasonOf(err)?.metadata.field).toHaveLength(200);
  });

  it("never cuts a surrogate pair in two (a lone surrogate cannot be percent-encoded into grpc-message)", () => {
    expect(clip("a\u{1F600}b", 3)).toBe("a…");
    expect(clip("ab\u{1F600}c", 4)).toBe("ab…");
    expect(clip("abc\u{1F600}", 5)).toBe("abc\u{1F600}");
    expect(clip("short", 5)).toBe("short");
    expect(() => encodeURIComponent(clip("\u{1F600}".repeat(600), 1_000))).not.toThrow();
  });
});
