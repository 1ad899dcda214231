import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { getOption, hasOption, type DescField, type DescFile } from "@bufbuild/protobuf";
import { nestedTypes } from "@bufbuild/protobuf/reflect";
import { RE2JS } from "@bufbuild/re2";
import { file_accountbalance_v1_account_balance_service } from "@account-balance/proto/accountbalance/v1/account_balance_service_pb.js";
import { file_accountbalance_v1_account_balance_admin_service } from "@account-balance/proto/accountbalance/v1/account_balance_admin_service_pb.js";
import { file_accountbalance_v1_records } from "@account-balance/proto/accountbalance/v1/records_pb.js";
import { field as fieldRulesExt, type FieldRules } from "@bufbuild/protovalidate/gen/buf/validate/validate_pb.js";
import { contractRegexMatch, NATIVE_PATTERNS } from "./patterns.js";

const fieldRules = (f: DescField): FieldRules | undefined => (hasOption(f, fieldRulesExt) ? getOption(f, fieldRulesExt) : undefined);

function patternsOf(rules: FieldRules | undefined, into: Set<string>): void {
  const t = rules?.type;
  if (t === undefined) return;
  // An unset pattern reads as "".
  if (t.case === "string" && t.value.pattern !== "") into.add(t.value.pattern);
  if (t.case === "map") {
    patternsOf(t.value.keys, into);
    patternsOf(t.value.values, into);
  }
  if (t.case === "repeated") patternsOf(t.value.items, into);
}

function contractPatterns(files: DescFile[]): Set<string> {
  const found = new Set<string>();
  for (const file of files) {
    for (const type of nestedTypes(file)) {
      if (type.kind !== "message") continue;
      for (const field of type.fields) patternsOf(fieldRules(field), found);
    }
  }
  return found;
}

describe("contractRegexMatch", () => {
  it("covers every string.pattern of the contract natively", () => {
    const found = contractPatterns([
      file_accountbalance_v1_account_balance_service,
      file_accountbalance_v1_account_balance_admin_service,
      file_accountbalance_v1_records,
    ]);
    expect(found.size).toBeGreaterThan(0);
    for (const p of found) expect(NATIVE_PATTERNS).toContain(p);
  });

  it("answers as RE2 does for each native pattern, on any text", () => {
    // Strings near the patterns' edges: their own alphabets, lower case, space, DEL,
    // newlines (RE2's `$` is the end of the text only), and any Unicode.
    const near = fc.array(
      fc.constantFrom(..."bal_0123456789ABCDEFGHJKMNPQRSTVWXYZILOUabz!~ \u007f\n\r\té€😀".split(/(?:)/u)),
      { maxLength: 34 },
    );
    // A balance id's shape, with one character or the length a little off now and then.
    const idChar = fc.oneof(
      { arbitrary: fc.constantFrom(..."0123456789ABCDEFGHJKMNPQRSTVWXYZ".split("")), weight: 30 },
      { arbitrary: fc.constantFrom(..."ILOUa_\n".split("")), weight: 1 },
    );
    const idLike = fc.array(idChar, { minLength: 25, maxLength: 27 }).map((cs) => "bal_" + cs.join(""));
    const text = fc.oneof(near.map((cs) => cs.join("")), idLike, fc.string({ unit: "binary", maxLength: 40 }));
    for (const p of NATIVE_PATTERNS) {
      const re = RE2JS.compile(p);
      fc.assert(
        fc.property(text, (s) => contractRegexMatch(p, s) === re.test(s)),
        { numRuns: 3_000 },
      );
      // And the patterns' own edge cases, so the runs above cannot all be trivial misses.
      for (const s of ["bal_" + "0".repeat(26), "bal_" + "0".repeat(26) + "\n", "USD", "USD\n", "usd", "a~!", "a b", ""]) {
        expect(contractRegexMatch(p, s), `${p} on ${JSON.stringify(s)}`).toBe(re.test(s));
      }
    }
    expect(contractRegexMatch("^bal_[0-9A-HJKMNP-TV-Z]{26}$", "bal_" + "0".repeat(26))).toBe(true);
    expect(contractRegexMatch("^[A-Z]{3}$", "USD\n")).toBe(false);
  });

  it("matches any other pattern with RE2", () => {
    expect(contractRegexMatch("^\\pL+$", "añb")).toBe(true);
    expect(contractRegexMatch("^a+$", "aab")).toBe(false);
    // Lookahead is not RE2: refused, as protovalidate's own matcher refuses it.
    expect(() => contractRegexMatch("^(?=a)a$", "a")).toThrow();
  });
});
