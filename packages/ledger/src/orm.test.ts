import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkServerVersion, inlineParams } from "./orm.js";
import { createTestDatabase, type TestDatabase } from "./testing.js";
import { LedgerError, openLedger } from "./index.js";

// The batch sends BEGIN and COMMIT in one message with its statements, so their parameters
// travel as literals in the SQL text: each must come back from PostgreSQL exactly as sent.
let db: TestDatabase;
let client: pg.Client;

beforeAll(async () => {
  db = await createTestDatabase();
  client = new pg.Client({ connectionString: db.url });
  await client.connect();
});

afterAll(async () => {
  await client?.end();
  await db?.drop();
});

const texts = [
  "",
  "plain",
  "it's",
  "back\\slash \\' \\\\",
  "$v$",
  "$v$ inside $v$",
  "ends in $v",
  "$v",
  "v$",
  "$",
  "$$",
  "$$ dollar $$",
  "E'x'",
  "'); drop table account_balances; --",
  "$v$'); drop table account_balances; --",
  "ünïcödé ✓ \n line \t tab",
  JSON.stringify({ a: "x$v", b: ["$v$", "'"] }),
];

describe("inlineParams", () => {
  for (const conforming of ["on", "off"]) {
    it(`every text round-trips through a simple query (standard_conforming_strings ${conforming})`, async () => {
      await client.query(`set standard_conforming_strings = ${conforming}`);
      try {
        for (const text of texts) {
          const [, result] = (await client.query(
            `select 1; ${inlineParams("select ?::text as v, ?::text as w", [text, `${text}$v`])}`,
          )) as unknown as pg.QueryResult[];
          expect(result!.rows).toEqual([{ v: text, w: `${text}$v` }]);
        }
      } finally {
        await client.query("set standard_conforming_strings = on");
      }
    });
  }

  it("numbers, bigints and null become literals of the type their context gives", async () => {
    const { rows } = await client.query(inlineParams("select ?::int as n, ?::bigint as b, ?::text as t, ?::jsonb as j", [
      42,
      9007199254740993n,
      null,
      '{"k":"$v"}',
    ]));
    expect(rows).toEqual([{ n: 42, b: "9007199254740993", t: null, j: { k: "$v" } }]);
  });

  it("reads placeholders as knex does: a backslash-escaped ? is the operator, not a parameter", async () => {
    const { rows } = await client.query(inlineParams(`select '{"a":1}'::jsonb \\? 'a' as has, ?::int as n`, [5]));
    expect(rows).toEqual([{ has: true, n: 5 }]);
  });

  it("refuses a placeholder count that does not match, and a parameter it cannot write", () => {
    expect(() => inlineParams("select ?, ?", [1])).toThrow(TypeError);
    expect(() => inlineParams("select ?", [1, 2])).toThrow(TypeError);
    expect(() => inlineParams("select ?", [{ a: 1 }])).toThrow(TypeError);
    expect(() => inlineParams("select ?", [true])).toThrow(TypeError);
  });
});

describe("checkServerVersion", () => {
  it("takes PostgreSQL 13 and later, and refuses older servers and unreadable answers by name", () => {
    for (const ok of ["130000", "150019", "180001"]) expect(() => checkServerVersion(ok)).not.toThrow();
    for (const old of ["120015", "90624", "", "abc"]) {
      expect(() => checkServerVersion(old)).toThrow(/needs PostgreSQL 13 or later; the database reports server_version_num/);
    }
  });
});

describe("openLedger on a URL whose database does not exist", () => {
  it("says so in PostgreSQL's words, not as an internal error", async () => {
    const url = new URL(db.url);
    url.pathname = "/no_such_ledger_database";
    const err = await openLedger({ databaseUrl: url.toString() }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(LedgerError);
    expect((err as LedgerError).reason).toBe("UNAVAILABLE");
    expect((err as LedgerError).message).toBe('the database refused the connection: database "no_such_ledger_database" does not exist');
  });
});

describe("a ledger opened without migrations on a database that lacks them", () => {
  it("answers UNAVAILABLE naming the migrations, not INTERNAL, and writes nothing", async () => {
    const ledger = await openLedger({ databaseUrl: db.url, migrate: false });
    try {
      const calls: Array<[string, () => Promise<unknown>]> = [
        ["create", () => ledger.balances.create({ userId: "u", balanceType: "general", balanceCents: 0n, currency: "EUR", status: "active", metadata: {} })],
        ["list", () => ledger.balances.list({ userId: "u" }, { limit: 10, page: 1 })],
        ["totals", () => ledger.reads.totals({ userId: "u" })],
      ];
      for (const [name, call] of calls) {
        const err = await call().then(
          () => undefined,
          (e: unknown) => e,
        );
        expect([name, (err as LedgerError).reason, (err as LedgerError).message]).toEqual([
          name,
          "UNAVAILABLE",
          "the database's tables are missing or older than this version: apply the migrations (pnpm migrate)",
        ]);
      }
      expect((await client.query("select to_regclass('account_balances') as t")).rows[0].t).toBeNull();
    } finally {
      await ledger.close();
    }
  });
});
