import { describe, expect, it } from "vitest";
import { buildRoutes, compareSpecificity, matchPathTemplate, matchRoute, parsePathTemplate, PathTemplateError, splitPath } from "./routes.js";

describe("parsePathTemplate", () => {
  it("parses the zero-segment path", () => {
    expect(parsePathTemplate("/")).toMatchObject({ segments: [], variables: [], verb: undefined });
  });

  it("parses literals, variables, patterns and verbs", () => {
    const t = parsePathTemplate("/v1/{name=shelves/*}/books/{book.id=**}:cancel");
    expect(t.segments.map((s) => s.kind)).toEqual(["literal", "literal", "single", "literal", "multi"]);
    expect(t.variables).toEqual([
      { fieldPath: ["name"], start: 1, end: 3 },
      { fieldPath: ["book", "id"], start: 4, end: undefined },
    ]);
    expect(t.verb).toBe("cancel");
    expect(matchPathTemplate(t, splitPath("/v1/shelves/s1/books/a/b:cancel")!)?.size).toBe(2);
    const values = [...matchPathTemplate(t, splitPath("/v1/shelves/s1/books/a/b:cancel")!)!.values()];
    expect(values).toEqual(["shelves/s1", "a/b"]);
    expect(matchPathTemplate(t, splitPath("/v1/shelves/s1/books/a/b")!)).toBeUndefined();
  });

  it.each(["", "v1/x", "/{id", "/{id}}", "/**/x", "/{a}/{a}", "/a b/{x y}", "/{id=a/{b}}"])("refuses %j", (t) => {
    expect(() => parsePathTemplate(t)).toThrow(PathTemplateError);
  });
});

describe("specificity", () => {
  it("orders literal before * before ** at the first differing position", () => {
    const templates = ["/{id}", "/{id}/credit", "/me/balances", "/expiring", "/users/{user_id}/total", "/{id}/{x=**}", "/"];
    const sorted = templates.map(parsePathTemplate).sort(compareSpecificity).map((t) => t.template);
    expect(sorted.indexOf("/expiring")).toBeLessThan(sorted.indexOf("/{id}"));
    expect(sorted.indexOf("/me/balances")).toBeLessThan(sorted.indexOf("/{id}/credit"));
    expect(sorted.indexOf("/users/{user_id}/total")).toBeLessThan(sorted.indexOf("/{id}/credit"));
    expect(sorted.indexOf("/{id}/credit")).toBeLessThan(sorted.indexOf("/{id}/{x=**}"));
  });

  it("splits paths into decoded segments and refuses bad escapes", () => {
    expect(splitPath("/")).toEqual([]);
    expect(splitPath("")).toEqual([]);
    expect(splitPath("/a%2Fb/c/")).toEqual(["a/b", "c"]);
    expect(splitPath("/%E0%A4%A")).toBeUndefined();
  });
});

describe("the account-balance contract's rules", () => {
  it("builds its route table and resolves the documented paths", async () => {
    const { AccountBalanceService } = await import("@account-balance/proto/accountbalance/v1/account_balance_service_pb.js");
    const { AccountBalanceAdminService } = await import("@account-balance/proto/accountbalance/v1/account_balance_admin_service_pb.js");
    const routes = buildRoutes([AccountBalanceService, AccountBalanceAdminService]);
    const hit = (method: string, path: string) => {
      const m = matchRoute(routes, method, splitPath(path)!);
      return m.kind === "found" ? [m.route.method.name, Object.fromEntries(m.values)] : m.kind;
    };
    expect(hit("GET", "/me/balances")).toEqual(["ListMyBalances", {}]);
    expect(hit("GET", "/me/total")).toEqual(["GetMyTotalBalance", {}]);
    expect(hit("GET", "/expiring")).toEqual(["ListExpiringBalances", {}]);
    expect(hit("GET", "/bal_1")).toEqual(["GetBalance", { id: "bal_1" }]);
    expect(hit("POST", "/")).toEqual(["CreateBalance", {}]);
    expect(hit("PUT", "/bal_1")).toEqual(["UpdateBalance", { id: "bal_1" }]);
    expect(hit("DELETE", "/bal_1")).toEqual(["CloseBalance", { id: "bal_1" }]);
    expect(hit("POST", "/bal_1/credit")).toEqual(["CreditBalance", { id: "bal_1" }]);
    expect(hit("POST", "/bal_1/debit")).toEqual(["DebitBalance", { id: "bal_1" }]);
    expect(hit("GET", "/bal_1/transactions")).toEqual(["ListBalanceTransactions", { id: "bal_1" }]);
    expect(hit("GET", "/me/transactions")).toEqual(["ListMyTransactions", {}]);
    expect(hit("GET", "/users/u1/balances")).toEqual(["ListUserBalances", { user_id: "u1" }]);
    expect(hit("GET", "/users/u1/total")).toEqual(["GetUserTotalBalance", { user_id: "u1" }]);
    expect(hit("POST", "/me/balances")).toBe("method-not-allowed");
    expect(hit("GET", "/a/b/c")).toBe("not-found");
  });
});
