import { describe, expect, it } from "vitest";
import { SCENARIOS } from "./options.js";
import { opSource, type Op, type Target } from "./ops.js";
import { grpcFrame, grpcFrameDirect, protoBytes } from "./worker.js";

const target: Target = {
  baseUrl: "http://127.0.0.1:1",
  restBase: "/x",
  serviceToken: "token",
  session: "session",
  databaseUrl: "postgres://unused",
  ids: { debitCount: 10_000, hot: "bal_01HOT0000000000000000000000", big: "bal_01BIG0000000000000000000000", small: "bal_01SMALL00000000000000000000" },
};

describe("grpcFrameDirect", () => {
  it("writes the same bytes as grpcFrame(protoBytes(op)) for every scenario's ops", () => {
    for (const scenario of SCENARIOS) {
      const next = opSource(scenario, target);
      for (let i = 0; i < 50; i++) {
        const op = next();
        expect(grpcFrameDirect(op).toString("hex"), `${scenario} ${JSON.stringify(op)}`).toBe(grpcFrame(protoBytes(op)).toString("hex"));
      }
    }
  });

  it("handles multi-byte lengths and non-ASCII strings", () => {
    const ops: Op[] = [
      { rpc: "CreditBalance", id: target.ids.hot, amount: 1, key: "k".repeat(200) },
      { rpc: "DebitBalance", id: target.ids.hot, amount: 1, key: "clé-ü-€" },
    ];
    for (const op of ops) expect(grpcFrameDirect(op).toString("hex")).toBe(grpcFrame(protoBytes(op)).toString("hex"));
  });
});
