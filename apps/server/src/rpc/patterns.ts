import { RE2JS } from "@bufbuild/re2";

/**
 * The contract's `string.pattern` rules that are matched with the platform `RegExp`.
 * protovalidate matches patterns with RE2 (a JavaScript port) to keep its linear-time
 * promise; on the debit path that was about 6 KB allocated per call (a `Set` per DFA step),
 * a twelfth of all the server allocated, and so more scavenges and more promoted to the old
 * generation (docs/benchmarks.md, session 10). Each of these is an anchored run of ASCII
 * classes with no alternation, group or nested quantifier: it means the same in both engines
 * and cannot backtrack. patterns.test.ts checks both, and that the contract has no other
 * `string.pattern` (anything else, a CEL `matches()` say, still goes to RE2).
 */
export const NATIVE_PATTERNS: readonly string[] = ["^[!-~]+$", "^[A-Z]{3}$", "^bal_[0-9A-HJKMNP-TV-Z]{26}$"];

const native = new Map(NATIVE_PATTERNS.map((p) => [p, new RegExp(p, "u")]));

// Patterns come from the schema, but a CEL rule could build one from input: bounded, as
// protovalidate bounds its own cache.
const RE2_CACHE_LIMIT = 1024;
const re2 = new Map<string, RE2JS>();

/**
 * protovalidate's `regexMatch`: the patterns above natively, any other with RE2 as
 * protovalidate itself would (a pattern that is not valid RE2 throws, and the validator
 * reports an error, as it does by default).
 */
export function contractRegexMatch(pattern: string, against: string): boolean {
  const fast = native.get(pattern);
  if (fast !== undefined) return fast.test(against);
  let re = re2.get(pattern);
  if (re === undefined) {
    if (re2.size >= RE2_CACHE_LIMIT) re2.clear();
    re = RE2JS.compile(pattern);
    re2.set(pattern, re);
  }
  return re.test(against);
}
