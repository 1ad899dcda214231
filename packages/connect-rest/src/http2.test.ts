// The same gateway behind node:http2 (h2c), the way the server also speaks HTTP/2.
import { connect, createServer, type ClientHttp2Session, type Http2Server } from "node:http2";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, expect, it } from "vitest";
import { ItemService } from "./testgen/resttest/v1/resttest_pb.js";
import { createRestGateway, createUnaryInvoker, implementation } from "./index.js";

const invoker = createUnaryInvoker(
  [
    implementation(ItemService, {
      getItem: (req) => ({ id: req.id, count: 3n }),
      createItem: (item) => item,
    }),
  ],
  [],
);
const gateway = createRestGateway({ services: [ItemService], invoker, basePath: "/h2", maxBodyBytes: 64 });

let server: Http2Server;
let session: ClientHttp2Session;

beforeAll(async () => {
  server = createServer((req, res) => {
    void gateway(req, res).then((handled) => {
      if (!handled) res.writeHead(404).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  session = connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
});

afterAll(async () => {
  session.close();
  await new Promise((resolve) => server.close(resolve));
});

function request(headers: Record<string, string>, body?: string): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const stream = session.request(headers);
    let status = 0;
    let text = "";
    stream.on("response", (h) => (status = Number(h[":status"])));
    stream.setEncoding("utf8");
    stream.on("data", (c: string) => (text += c));
    stream.on("end", () => resolve({ status, body: text === "" ? undefined : JSON.parse(text) }));
    stream.on("error", reject);
    stream.end(body);
  });
}

it("serves GET and POST over HTTP/2", async () => {
  expect(await request({ ":method": "GET", ":path": "/h2/it_5" })).toMatchObject({ status: 200, body: { id: "it_5", count: 3 } });
  const created = await request({ ":method": "POST", ":path": "/h2/", "content-type": "application/json" }, '{"name":"n","color":"red"}');
  expect(created).toMatchObject({ status: 200, body: { name: "n", color: "red" } });
  const tooBig = await request({ ":method": "POST", ":path": "/h2/", "content-type": "application/json" }, JSON.stringify({ name: "x".repeat(100) }));
  expect(tooBig.status).toBe(413);
  expect((await request({ ":method": "GET", ":path": "/elsewhere" })).status).toBe(404);
});
