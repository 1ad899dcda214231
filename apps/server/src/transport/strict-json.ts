import { jsonHiddenProblem } from "@account-balance/connect-rest";

/**
 * The text of a Connect JSON body, for connect's jsonOptions.textDecoder and the short path:
 * invalid UTF-8 is refused (the default decoder would store U+FFFD in its place), and so is
 * what JSON.parse would hide, as the REST gateway refuses it: a key twice in one object (the
 * last would win) or a fraction that rounds to a whole number (4.9999999999999999 would move
 * 5). connect answers the throw as invalid_argument.
 */
export const strictJsonDecoder = {
  utf8: new TextDecoder("utf-8", { fatal: true }),
  decode(bytes?: Uint8Array): string {
    const text = this.utf8.decode(bytes);
    const problem = jsonHiddenProblem(text);
    if (problem !== undefined) throw new Error(problem);
    return text;
  },
};
