// Lays out the google/api protos the test contract imports, from the npm package that ships
// them, in the git-ignored folder third_party/ (this package's own copy, so its generate step
// does not race with packages/proto's, which rewrites that package's third_party/).
import { cpSync, mkdirSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const out = join(dirname(fileURLToPath(import.meta.url)), "..", "third_party");
const gpf = dirname(require.resolve("google-proto-files/package.json"));

rmSync(out, { recursive: true, force: true });
for (const f of ["google/api/annotations.proto", "google/api/http.proto"]) {
  mkdirSync(dirname(join(out, f)), { recursive: true });
  cpSync(join(gpf, f), join(out, f));
}
