// The gateway in front of real service implementations and interceptors on a real HTTP server (random port).
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { create, type JsonObject } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createContextValues, type Interceptor } from "@connectrpc/connect";
import { codeFromString } from "@connectrpc/connect/protocol-connect";
import { ErrorInfoSchema } from "@account-balance/proto/google/rpc/error_details_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Color, ItemSchema, ItemService, PingService, type GetFileRequest, type Item } from "./testgen/resttest/v1/resttest_pb.js";
import { createRestGateway, createUnaryInvoker, implementation, restCallKey } from "./index.js";

const stored: Item = create(ItemSchema, {
  id: "it_1",
  name: "first",
  count: 9007199254740991n,
  color: Color.RED,
  createdAt: timestampFromDate(new Date("2024-05-01T12:00:00Z")),
  labels: { a: "b" },
  extra: { x: 1, nested: { y: [true, null, "s"] } },
  size: { width: 3, height: 4 },
  tags: ["t1", "t2"],
  active: false,
  big: 2n ** 60n,
  ratio: 0.5,
  blob: new Uint8Array([1, 2, 3]),
  choice: { case: "number", value: 7 },
  palette: [Color.RED, Color.DARK_BLUE],
});

const interceptorSaw: { sessionId: string | null; authorization: string | null; rest: boolean }[] = [];
let slowAborted = false;
let lastRetryAfter: string | null = null;

const interceptor: Interceptor = (next) => async (req) => {
  interceptorSaw.push({
    sessionId: new URL(req.url).searchParams.get("session_id"),
    authorization: req.header.get("authorization"),
    rest: req.contextValues.get(restCallKey) !== undefined,
  });
  if (req.header.get("x-deny") === "1") throw new ConnectError("denied by interceptor", Code.PermissionDenied);
  const res = await next(req);
  if (!res.stream) res.header.set("x-intercepted", "1");
  return res;
};

const items = implementation(ItemService, {
  listItems: (req) => ({ items: [stored], echo: req }),
  createItem: (item) => ({ ...item, id: "it_new" }),
  getSpecialItem: (req) => ({ id: "special", name: req.flavor ?? "plain" }),
  getItem: (req) => {
    if (req.id !== "it_1") throw new ConnectError(`item ${req.id} not found`, Code.NotFound);
    return stored;
  },
  updateItem: (item) => item,
  patchItem: (req) => req,
  deleteItem: () => ({}),
  countItem: (req) => ({ id: req.id, count: 5n }),
  listUserItems: (req) => ({ userId: req.userId }),
  getTag: (req) => req,
  archiveItem: (req) => ({ id: req.id, name: "archived" }),
  getFile: async (req, ctx) => {
    if (req.path === "slow") {
      await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve));
      slowAborted = true;
    }
    return req;
  },
  nestedPath: (req) => req,
  fail: (req) => {
    const code = codeFromString(req.code) ?? Code.Unknown;
    throw new ConnectError("it failed", code, { "retry-after": "7" }, [
      { desc: ErrorInfoSchema, value: { reason: "THING_FAILED", domain: "resttest", metadata: { k: "v" } } },
    ]);
  },
  whoAmI: (_req, ctx) => {
    const headers: Record<string, string> = {};
    ctx.requestHeader.forEach((v, k) => (headers[k] = v));
    return {
      headers,
      sessionId: new URL(ctx.url).searchParams.get("session_id") ?? "",
      protocol: ctx.values.get(restCallKey) ? "rest" : "other",
      urlPath: new URL(ctx.url).pathname,
    };
  },
  hidden: () => ({ pong: "hidden" }),
});
const invoker = createUnaryInvoker([items, implementation(PingService, { ping: () => ({ pong: "pong" }) })], [interceptor]);

// The product's envelope, to prove formatSuccess/formatError see what they need.
const gateway = createRestGateway({
  services: [ItemService, PingService],
  invoker,
  basePath: "/api/items/",
  maxBodyBytes: 1024,
  dateEndsDay: ["since"],
  formatSuccess: (json, { method }) => ({
    status: method.name === "CreateItem" ? 201 : 200,
    body: { success: true, data: json },
  }),
  formatError: (err, { status }) => {
    const info = err.findDetails(ErrorInfoSchema)[0];
    if (err.metadata.get("retry-after") !== null) lastRetryAfter = err.metadata.get("retry-after");
    return {
      status,
      body: { success: false, error: err.rawMessage, code: info?.reason ?? "NONE", details: info ? { ...info.metadata } : null },
    };
  },
});
// Defaults everywhere.
const plain = createRestGateway({ services: [ItemService], invoker, basePath: "/plain" });

let server: Server;
let base: string;

beforeAll(async () => {
  server = createServer((req, res) => {
    void (async () => {
      if (await gateway(req, res)) return;
      if (await plain(req, res)) return;
      res.writeHead(404, { "content-type": "text/plain" }).end("fallthrough");
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

async function call(path: string, init: RequestInit = {}): Promise<{ status: number; body: any; headers: Headers }> {
  const res = await fetch(`${base}${path}`, init);
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: res.status, body, headers: res.headers };
}

const json = (method: string, body: unknown, headers: Record<string, string> = {}): RequestInit => ({
  method,
  headers: { "content-type": "application/json", ...headers },
  body: typeof body === "string" ? body : JSON.stringify(body),
});

describe("routes", () => {
  it("serves a variable route and renders REST JSON", async () => {
    const { status, body } = await call("/api/items/it_1");
    expect(status).toBe(200);
    expect(body).toEqual({
      success: true,
      data: {
        id: "it_1",
        name: "first",
        count: 9007199254740991, // int64 as a JSON number
        color: "red",
        note: null, // unset optional
        created_at: "2024-05-01T12:00:00Z",
        labels: { a: "b" },
        extra: { x: 1, nested: { y: [true, null, "s"] } },
        size: { width: 3, height: 4 },
        tags: ["t1", "t2"],
        active: false, // implicit scalar with its default
        rank: null,
        big: "1152921504606846976", // beyond 2^53-1: a string, not a wrong number
        ratio: 0.5,
        blob: "AQID",
        text: null, // the oneof member not chosen
        number: 7,
        palette: ["red", "dark_blue"],
        shade: null, // COLOR_UNSPECIFIED
      },
    });
  });

  it("prefers literal segments over variables at every position", async () => {
    expect((await call("/api/items/special")).body.data.id).toBe("special");
    expect((await call("/api/items/special?flavor=mint")).body.data.name).toBe("mint");
    expect((await call("/api/items/ping")).body.data).toEqual({ pong: "pong" }); // second service
    // "/users/{user_id}" beats "/{id}/count" for /users/count: the first segment decides.
    expect((await call("/api/items/users/count")).body.data).toEqual({ user_id: "count" });
    expect((await call("/api/items/abc/count")).body.data).toEqual({ id: "abc", count: 5 });
    expect((await call("/api/items/people/u9")).body.data).toEqual({ user_id: "u9" }); // additional binding
    const missing = await call("/api/items/specialx");
    expect(missing.status).toBe(404);
    expect(missing.body).toEqual({ success: false, error: "item specialx not found", code: "NONE", details: null });
  });

  it("decodes path variables, nested ones, ** and custom verbs", async () => {
    expect((await call("/api/items/it_1/tags/red%20hot")).body.data).toEqual({ id: "it_1", tag: "red hot" });
    expect((await call("/api/items/files/a/b/c.txt")).body.data).toEqual({ path: "a/b/c.txt" });
    expect((await call("/api/items/sizes/3/4")).body.data).toEqual({ size: { width: 3, height: 4 } });
    const bad = await call("/api/items/sizes/x/4");
    expect(bad.status).toBe(400);
    expect(bad.body.error).toContain("size.width");
    const archived = await call("/api/items/it_7:archive", json("POST", {}));
    expect(archived.body.data).toMatchObject({ id: "it_7", name: "archived" });
  });

  it("serves the zero-segment path with and without a trailing slash", async () => {
    for (const p of ["/api/items", "/api/items/"]) {
      const { status, body } = await call(p);
      expect(status).toBe(200);
      expect(body.data.items[0].id).toBe("it_1");
    }
  });

  it("answers 405 with Allow when only the method is wrong, and falls through when no route matches", async () => {
    const r = await call("/api/items/users/x", json("POST", {}));
    expect(r.status).toBe(405);
    expect(r.headers.get("allow")).toBe("GET");
    const r2 = await call("/api/items/", { method: "PATCH" });
    expect(r2.status).toBe(405);
    expect(r2.headers.get("allow")).toBe("GET, POST");
    expect(await call("/api/items/a/b/c/d")).toMatchObject({ status: 404, body: "fallthrough" });
    expect(await call("/elsewhere")).toMatchObject({ status: 404, body: "fallthrough" });
    expect(await call("/api/itemsx/it_1")).toMatchObject({ status: 404, body: "fallthrough" });
  });

  it("with ownsBasePath answers an unknown path below it 404 in the envelope, and falls through elsewhere", async () => {
    const owning = createRestGateway({ services: [ItemService], invoker: createUnaryInvoker([implementation(ItemService, {})], []), basePath: "/api", ownsBasePath: true });
    const server = createServer((req, res) => {
      void owning(req, res, () => {
        res.writeHead(404);
        res.end("fallthrough");
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const below = await fetch(`${url}/api/items/a/b/c/d`);
      expect(below.status).toBe(404);
      expect(await below.json()).toEqual({ error: "no such route", code: "not_found" });
      expect(await (await fetch(`${url}/apix`)).text()).toBe("fallthrough");
    } finally {
      server.close();
    }
  });

  it("does not expose methods without an http rule", async () => {
    expect(gateway.routes.some((r) => r.method.name === "Hidden")).toBe(false);
  });
});

describe("query strings", () => {
  it("types parameters by the field they fill and ignores unknown ones", async () => {
    const q =
      "limit=5&offset=9007199254740991&active=true&color=dark_blue&since=2024-01-02T03:04:05Z" +
      "&tags=a&tags=b&ids=1&ids=-2&name=n&ratio=1.5&small=7&size.width=2&colors=red&colors=COLOR_DARK_BLUE" +
      "&session_id=s1&unknown=x&limit_extra=1";
    const { status, body } = await call(`/api/items/?${q}`);
    expect(status).toBe(200);
    expect(body.data.echo).toEqual({
      limit: 5,
      offset: 9007199254740991,
      active: true,
      color: "dark_blue",
      since: "2024-01-02T03:04:05Z",
      tags: ["a", "b"],
      ids: [1, -2],
      name: "n",
      ratio: 1.5,
      small: 7,
      size: { width: 2, height: 0 },
      labels: {},
      colors: ["red", "dark_blue"],
    });
  });

  it("accepts enum names in any spelling, bools as 1/0, bare dates, and empty values as absent", async () => {
    const { body } = await call("/api/items/?color=RED&active=0&since=2024-01-02&limit=&name=");
    // `since` is one of this gateway's dateEndsDay fields: the last instant of the day.
    expect(body.data.echo).toMatchObject({ color: "red", active: false, since: "2024-01-02T23:59:59.999999999Z", limit: null, name: null });
    // Elsewhere (the default) a bare date is midnight.
    expect((await call("/plain?since=2024-01-02")).body.echo.since).toBe("2024-01-02T00:00:00Z");
    expect((await call("/api/items/?since=2024-01-02T00:00:00Z")).body.data.echo.since).toBe("2024-01-02T00:00:00Z");
    const offset = await call("/api/items/?since=2024-01-02T03:04:05.5+02:00");
    expect(offset.body.data.echo.since).toBe("2024-01-02T01:04:05.500Z");
    expect((await call("/api/items/?color=COLOR_RED")).body.data.echo.color).toBe("red");
    expect((await call("/api/items/?limit=%2B3")).body.data.echo.limit).toBe(3);
  });

  it.each([
    ["limit=abc", "limit"],
    ["limit=1.5", "limit"],
    ["limit=2147483648", "limit"],
    ["offset=9223372036854775808", "offset"],
    ["small=-1", "small"],
    ["active=yes", "active"],
    ["color=purple", "color"],
    ["since=yesterday", "since"],
    ["since=2024-13-45T00:00:00Z", "since"],
    ["ids=1&ids=x", "ids"],
    ["ratio=lots", "ratio"],
    ["labels=x", "labels"],
    ["limit=1&limit=2", "limit"],
  ])("refuses %s with a 400 naming the field", async (q, field) => {
    const { status, body } = await call(`/api/items/?${q}`);
    expect(status).toBe(400);
    expect(body.success).toBe(false);
    expect(body.error).toContain(field);
  });

  it("lists enum choices in the REST spelling", async () => {
    const { body } = await call("/api/items/?color=purple");
    expect(body.error).toBe("color: expected one of red, dark_blue");
  });
});

describe("bodies", () => {
  it("accepts snake_case and lowerCamel keys, lowercase enums, null as absent, unknown keys ignored", async () => {
    const { status, body } = await call(
      "/api/items/",
      json("POST", {
        name: "new",
        count: 42,
        color: "dark_blue",
        note: null,
        createdAt: "2024-02-03T04:05:06Z",
        labels: { k: "v" },
        extra: { any: ["json", 1, null] },
        size: { width: 1 },
        tags: ["x"],
        palette: ["red", "COLOR_DARK_BLUE", 1],
        rank: 3,
        big: "18446744073709551615",
        text: "chosen",
        unknown_field: { deep: true },
      }),
    );
    expect(status).toBe(201);
    expect(body.data).toEqual({
      id: "it_new",
      name: "new",
      count: 42,
      color: "dark_blue",
      note: null,
      created_at: "2024-02-03T04:05:06Z",
      labels: { k: "v" },
      extra: { any: ["json", 1, null] },
      size: { width: 1, height: 0 },
      tags: ["x"],
      active: false,
      rank: 3,
      big: "18446744073709551615",
      ratio: 0,
      blob: "",
      text: "chosen",
      number: null,
      palette: ["red", "dark_blue", "red"],
      shade: null,
    });
  });

  it("keeps a __proto__ map key as data", async () => {
    const { body } = await call("/api/items/", json("POST", '{"labels":{"__proto__":"p","k":"v"}}'));
    expect(Object.keys(body.data.labels)).toEqual(["__proto__", "k"]);
    expect(body.data.labels["__proto__"]).toBe("p");
  });

  it("emits unset message fields as null", async () => {
    const { body } = await call("/api/items/", json("POST", { name: "bare" }));
    expect(body.data).toMatchObject({ created_at: null, size: null, extra: null, note: null, labels: {}, tags: [] });
  });

  it("keeps int64 beyond 2^53 exact when sent as a string, and refuses it as a JSON number", async () => {
    expect((await call("/api/items/", json("POST", { count: "9007199254740993" }))).body.data.count).toBe("9007199254740993");
    const r = await call("/api/items/", json("POST", { count: 9007199254740993 }));
    expect(r.status).toBe(400);
    expect(r.body.error).toContain("count");
  });

  it.each([
    [{ count: "abc" }, "count"],
    [{ count: 1.5 }, "count"],
    [{ rank: 2147483648 }, "rank"],
    [{ name: 5 }, "name"],
    [{ active: "true" }, "active"],
    [{ color: "purple" }, "color"],
    [{ tags: "a" }, "tags"],
    [{ tags: [1] }, "tags[0]"],
    [{ labels: { a: 1 } }, 'labels["a"]'],
    [{ size: 3 }, "size"],
    [{ size: { width: "wide" } }, "size.width"],
    [{ created_at: "tomorrow" }, "created_at"],
    // Date.parse would roll these over (to March 3rd, May 1st, the next day).
    [{ created_at: "2030-02-31T00:00:00Z" }, "created_at"],
    [{ created_at: "2023-02-29T00:00:00Z" }, "created_at"],
    [{ created_at: "2030-04-31T00:00:00Z" }, "created_at"],
    [{ created_at: "2030-01-01T24:00:00Z" }, "created_at"],
    [{ extra: [1] }, "extra"],
  ])("refuses the wrong type %j with a 400 naming %s", async (payload, field) => {
    const { status, body } = await call("/api/items/", json("POST", payload));
    expect(status).toBe(400);
    expect(body.error).toContain(field);
  });

  it("takes a leap day and an offset as they are", async () => {
    const r = await call("/api/items/", json("POST", { created_at: "2024-02-29T23:59:59.5+05:30" }));
    expect(r.status).toBe(201);
    expect(r.body.data.created_at).toBe("2024-02-29T18:29:59.500Z");
  });

  it("refuses a body that is not a JSON object", async () => {
    expect((await call("/api/items/", json("POST", [1]))).status).toBe(400);
    expect((await call("/api/items/", json("POST", "\"text\""))).status).toBe(400);
  });

  it("refuses a key given twice, under one name or both, before calling the handler", async () => {
    const before = interceptorSaw.length;
    const twice = await call("/api/items/", json("POST", '{"name":"a","name":"b"}'));
    expect(twice.status).toBe(400);
    expect(twice.body.error).toBe('JSON key "name" appears twice in one object');
    const nested = await call("/api/items/", json("POST", '{"name":"a","labels":{"k":"1","k":"2"}}'));
    expect(nested.status).toBe(400);
    expect(nested.body.error).toBe('JSON key "k" appears twice in one object');
    const both = await call("/api/items/", json("POST", { created_at: "2030-01-01T00:00:00Z", createdAt: "2031-01-01T00:00:00Z" }));
    expect(both.status).toBe(400);
    expect(both.body.error).toBe('created_at: given twice (as "created_at" and "createdAt")');
    expect(interceptorSaw.length).toBe(before);
    const escaped = await call("/api/items/", json("POST", '{"name":"a","\\u006eame":"b"}'));
    expect(escaped.status).toBe(400);
    expect(escaped.body.error).toBe('JSON key "name" appears twice in one object');
    // The same key in different objects is fine.
    expect((await call("/api/items/", json("POST", { name: "x", labels: { name: "y" } }))).status).toBe(201);
  });

  it("refuses a number whose fraction JSON.parse would round to a whole one, before calling the handler", async () => {
    const before = interceptorSaw.length;
    for (const n of ["4.9999999999999999", "1.0000000000000001", "9007199254740990.6", "49999999999999999e-16"]) {
      const r = await call("/api/items/", json("POST", `{"name":"n","size":{"width":${n},"height":1}}`));
      expect([n, r.status, r.body.error]).toEqual([n, 400, `JSON number ${n} has a fraction that rounds to a whole number`]);
    }
    expect(interceptorSaw.length).toBe(before);
    // Whole numbers however written, and fractions that stay fractions (a double field), are fine.
    for (const n of ["5", "5.0", "5.000e0", "0.5e1", "50e-1", "500e-2"]) {
      const r = await call("/api/items/", json("POST", `{"name":"n","size":{"width":${n},"height":1}}`));
      expect([n, r.status, r.body.data?.size]).toEqual([n, 201, { width: 5, height: 1 }]);
    }
    const ratio = await call("/api/items/", json("POST", '{"name":"n","ratio":0.30000000000000004}'));
    expect([ratio.status, ratio.body.data.ratio]).toEqual([201, 0.30000000000000004]);
  });

  it("refuses malformed JSON with 400", async () => {
    const r = await call("/api/items/", json("POST", "{not json"));
    expect(r.status).toBe(400);
    expect(r.body.error).toBe("malformed JSON body");
  });

  it("refuses anything but application/json with 415, before calling the handler", async () => {
    const before = interceptorSaw.length;
    const form = await call("/api/items/", {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: "name=x",
    });
    expect(form.status).toBe(415);
    const text = await call("/api/items/", { method: "POST", headers: { "content-type": "text/plain" }, body: "{}" });
    expect(text.status).toBe(415);
    const none = await call("/api/items/", { method: "POST", body: new TextEncoder().encode('{"name":"x"}') });
    expect(none.status).toBe(415);
    const latin = await call("/api/items/", json("POST", {}, { "content-type": "application/json; charset=latin1" }));
    expect(latin.status).toBe(415);
    expect(interceptorSaw.length).toBe(before);
    const ok = await call("/api/items/", json("POST", { name: "x" }, { "content-type": "application/json; charset=UTF-8" }));
    expect(ok.status).toBe(201);
    // Even an empty body must be declared JSON: a body-less cross-site POST needs no preflight.
    const seen = interceptorSaw.length;
    const bare = await call("/api/items/", { method: "POST" });
    expect(bare.status).toBe(415);
    expect(bare.body.error).toBe("Content-Type: application/json is required");
    expect(interceptorSaw.length).toBe(seen);
    const empty = await call("/api/items/", { method: "POST", headers: { "content-type": "application/json" } });
    expect(empty.status).toBe(201); // an empty JSON body: an empty request
  });

  it("refuses a body past maxBodyBytes with 413", async () => {
    const big = JSON.stringify({ name: "x".repeat(2000) });
    const r = await call("/api/items/", json("POST", big));
    expect(r.status).toBe(413);
    expect(r.body.success).toBe(false);
  });

  it("lets path variables win over the body for PUT with body *", async () => {
    const r = await call("/api/items/it_9", json("PUT", { id: "other", name: "renamed", count: "12" }));
    expect(r.status).toBe(200);
    expect(r.body.data).toMatchObject({ id: "it_9", name: "renamed", count: 12 });
  });

  it("fills a named body field and takes the other fields from the query", async () => {
    const r = await call("/api/items/it_9?reason=because&item.name=ignored", json("PATCH", { name: "p", color: "RED" }));
    expect(r.status).toBe(200);
    expect(r.body.data).toMatchObject({ id: "it_9", reason: "because", item: { name: "p", color: "red" } });
  });

  it("renders google.protobuf.Empty as {}", async () => {
    expect(await call("/api/items/it_1", { method: "DELETE" })).toMatchObject({ status: 200, body: { success: true, data: {} } });
  });
});

describe("errors", () => {
  it.each([
    ["invalid_argument", 400],
    ["failed_precondition", 400],
    ["out_of_range", 400],
    ["unauthenticated", 401],
    ["permission_denied", 403],
    ["not_found", 404],
    ["unimplemented", 404],
    ["already_exists", 409],
    ["aborted", 409],
    ["resource_exhausted", 429],
    ["unavailable", 503],
    ["deadline_exceeded", 504],
    ["internal", 500],
    ["unknown", 500],
    ["data_loss", 500],
    ["canceled", 499],
  ])("maps %s to HTTP %i with the ErrorInfo details reaching formatError", async (code, status) => {
    const r = await call(`/api/items/fail/${code}`);
    expect(r.status).toBe(status);
    expect(r.body).toEqual({ success: false, error: "it failed", code: "THING_FAILED", details: { k: "v" } });
  });

  it("forwards response headers the handler set with the error", async () => {
    const r = await call("/api/items/fail/resource_exhausted");
    expect(r.headers.get("retry-after")).toBe("7");
    expect(lastRetryAfter).toBe("7"); // and formatError sees them as err.metadata
  });

  it("uses {error, code} with the Connect code name by default", async () => {
    const r = await call("/plain/fail/permission_denied");
    expect(r.status).toBe(403);
    expect(r.body).toEqual({ error: "it failed", code: "permission_denied" });
    const q = await call("/plain/?limit=x");
    expect(q).toMatchObject({ status: 400, body: { error: "limit: expected an integer", code: "invalid_argument" } });
    const ok = await call("/plain/it_1");
    expect(ok.body.count).toBe(9007199254740991); // default formatSuccess: the bare REST JSON
  });
});

describe("the call", () => {
  it("forwards the caller's headers and query string, and marks the call as REST", async () => {
    const r = await call(
      "/api/items/whoami?session_id=sess_123&x=1",
      json("POST", {}, {
        authorization: "Bearer tok",
        cookie: "session_id=c1; other=2",
        "x-session-id": "hdr_sess",
        "x-user-id": "u1",
        "x-user-type": "admin",
        "idempotency-key": "idem-1",
        "x-custom": "yes",
        "connect-timeout-ms": "1",
      }),
    );
    expect(r.status).toBe(200);
    const { headers, session_id, protocol, url_path } = r.body.data as JsonObject & { headers: Record<string, string> };
    expect(headers).toMatchObject({
      authorization: "Bearer tok",
      cookie: "session_id=c1; other=2",
      "x-session-id": "hdr_sess",
      "x-user-id": "u1",
      "x-user-type": "admin",
      "idempotency-key": "idem-1",
      "x-custom": "yes",
    });
    expect(headers["connect-timeout-ms"]).toBeUndefined();
    expect(headers["connection"]).toBeUndefined();
    expect(session_id).toBe("sess_123");
    expect(protocol).toBe("rest");
    expect(url_path).toBe("/resttest.v1.ItemService/WhoAmI");
    expect(interceptorSaw.at(-1)).toEqual({ sessionId: "sess_123", authorization: "Bearer tok", rest: true });
    expect(r.headers.get("x-intercepted")).toBe("1");
  });

  it("runs interceptors: their refusal is the REST error", async () => {
    const r = await call("/api/items/it_1", { headers: { "x-deny": "1" } });
    expect(r.status).toBe(403);
    expect(r.body).toMatchObject({ success: false, error: "denied by interceptor" });
  });

  it("aborts the handler's signal when the client goes away", async () => {
    const ac = new AbortController();
    const pending = fetch(`${base}/api/items/files/slow`, { signal: ac.signal }).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 100));
    ac.abort();
    await pending;
    for (let i = 0; i < 50 && !slowAborted; i++) await new Promise((r) => setTimeout(r, 20));
    expect(slowAborted).toBe(true);
  });
});

describe("the unary invoker's handler context", () => {
  // The handler waits for its signal and reports why it was aborted and how much time it had.
  const waiting = implementation(ItemService, {
    getFile: async (req, ctx) => {
      const left = ctx.timeoutMs();
      if (!ctx.signal.aborted) await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve));
      const reason = ctx.signal.reason as ConnectError;
      return { path: `${req.path}:${Code[reason.code]}:${left === undefined ? "none" : left <= 0 ? "expired" : left <= 50 ? "ok" : left}` };
    },
    getItem: () => stored,
  });
  const invoker = createUnaryInvoker([waiting], []);
  const call = (method: "getFile" | "getItem", message: object, timeoutMs: number | undefined, abort = new AbortController()) =>
    invoker.invoke({
      method: ItemService.method[method],
      message: create(ItemService.method[method].input, message),
      header: new Headers(),
      url: "http://test/",
      requestMethod: "POST",
      protocolName: "test",
      contextValues: createContextValues(),
      ...(timeoutMs === undefined ? {} : { timeoutMs }),
      abort,
    });

  it("aborts the signal with DEADLINE_EXCEEDED when the deadline passes, and counts it down", async () => {
    const outcome = await call("getFile", { path: "late" }, 50);
    expect(outcome.error).toBeUndefined();
    expect((outcome.message as GetFileRequest).path).toBe("late:DeadlineExceeded:ok");
  });

  it("a deadline already passed aborts at once", async () => {
    const outcome = await call("getFile", { path: "gone" }, 0);
    expect((outcome.message as GetFileRequest).path).toBe("gone:DeadlineExceeded:expired");
  });

  it("the caller's abort reaches the handler, and a finished call's signal is aborted as Canceled", async () => {
    const abort = new AbortController();
    const pending = call("getFile", { path: "left" }, undefined, abort);
    abort.abort(new ConnectError("client went away", Code.Canceled));
    expect(((await pending).message as GetFileRequest).path).toBe("left:Canceled:none");

    const fast = new AbortController();
    const outcome = await call("getItem", { id: "it_1" }, 60_000, fast);
    expect(outcome.error).toBeUndefined();
    expect(fast.signal.aborted).toBe(true);
    expect((fast.signal.reason as ConnectError).code).toBe(Code.Canceled);
  });
});
