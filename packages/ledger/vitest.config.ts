import "../../scripts/vitest-node20.js";
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["src/**/*.test.ts"],
    // Real PostgreSQL: an embedded cluster takes a few seconds to initialise.
    testTimeout: 30_000,
    hookTimeout: 90_000,
    // One file at a time: the concurrency and expiry tests are timing-sensitive on 2 cores.
    fileParallelism: false,
  },
});
