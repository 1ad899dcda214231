// `buf breaking` against the contract on the main branch, offline. The main branch's
// proto/ is exported to a scratch folder next to today's third_party/ (which is not
// committed), built into an image, and compared with the working tree.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, cpSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const buf = join(root, "packages/proto/node_modules/.bin/buf");
const against = process.env.BUF_BREAKING_AGAINST ?? "main";
const git = (...args) => execFileSync("git", args, { cwd: root, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();

let hasContract = false;
try {
  hasContract = git("ls-tree", "-r", "--name-only", against, "--", "proto").length > 0;
} catch {
  hasContract = false;
}
if (!hasContract) {
  console.log(`buf breaking: ${against} has no contract yet, nothing to compare`);
  process.exit(0);
}
const dir = mkdtempSync(join(tmpdir(), "buf-against-"));
try {
  execFileSync("bash", ["-c", `git archive ${against} proto | tar -x -C "${dir}"`], { cwd: root });
  cpSync(join(root, "packages/proto/third_party"), join(dir, "third_party"), { recursive: true });
  writeFileSync(join(dir, "buf.yaml"), "version: v2\nmodules:\n  - path: proto\n  - path: third_party\n");
  const image = join(dir, "against.binpb");
  execFileSync(buf, ["build", dir, "-o", image], { stdio: "inherit" });
  // Image against image: comparing a workspace folder with an image reports every file
  // of the folder as deleted.
  const current = join(dir, "current.binpb");
  execFileSync(buf, ["build", root, "-o", current], { stdio: "inherit" });
  execFileSync(buf, ["breaking", current, "--against", image], { cwd: root, stdio: "inherit" });
  console.log(`buf breaking: no breaking change against ${against}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
