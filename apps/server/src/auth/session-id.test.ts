import { describe, expect, it } from "vitest";
import { bearerToken, findSessionId } from "./session-id.js";

const req = (headers: Record<string, string>, url?: string) => ({ header: new Headers(headers), url });

describe("findSessionId", () => {
  it("follows the spec's order: header, bearer, query, cookie", () => {
    const all = { "x-session-id": "h", authorization: "Bearer b", cookie: "a=1; session_id=c" };
    expect(findSessionId(req(all, "http://x/p?session_id=q"))).toEqual({ sessionId: "h", from: "header" });
    const { "x-session-id": _h, ...noHeader } = all;
    expect(findSessionId(req(noHeader, "http://x/p?session_id=q"))).toEqual({ sessionId: "b", from: "bearer" });
    const { authorization: _a, ...cookieOnly } = noHeader;
    expect(findSessionId(req(cookieOnly, "http://x/p?session_id=q"))).toEqual({ sessionId: "q", from: "query" });
    expect(findSessionId(req(cookieOnly, "http://x/p"))).toEqual({ sessionId: "c", from: "cookie" });
    expect(findSessionId(req({}, "http://x/p"))).toBeUndefined();
  });

  it("skips blank values and non-bearer authorization", () => {
    expect(findSessionId(req({ "x-session-id": "  ", authorization: "Basic dTpw" }, "/p?session_id="))).toBeUndefined();
    expect(findSessionId(req({ authorization: "bearer   tok  " }))).toEqual({ sessionId: "tok", from: "bearer" });
  });

  it("takes an unreadable Bearer header as the credential: an empty id, never the query or cookie behind it", () => {
    for (const authorization of ["Bearer", "Bearer a b", "bearer  "]) {
      expect(findSessionId(req({ authorization, cookie: "session_id=c" }, "/p?session_id=q"))).toEqual({ sessionId: "", from: "bearer" });
    }
  });

  it("decodes query and cookie values and accepts a relative URL", () => {
    expect(findSessionId(req({}, "/bridge-payment/account-balance/me/balances?limit=5&session_id=a%2Bb"))?.sessionId).toBe("a+b");
    expect(findSessionId(req({ cookie: 'session_id="x%3Dy"' }))?.sessionId).toBe("x=y");
    expect(findSessionId(req({ cookie: "my_session_id=nope" }))).toBeUndefined();
  });
});

describe("bearerToken", () => {
  it("reads only the Bearer scheme", () => {
    expect(bearerToken(new Headers({ authorization: "Bearer abc" }))).toBe("abc");
    expect(bearerToken(new Headers({ authorization: "Basic abc" }))).toBeUndefined();
    expect(bearerToken(new Headers({ authorization: "Bearer a b" }))).toBeUndefined();
    expect(bearerToken(new Headers())).toBeUndefined();
  });
});
