import "../../scripts/vitest-node20.js";
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["src/**/*.test.ts"],
    // Real servers and, in some files, a real PostgreSQL (embedded takes a few seconds to start).
    testTimeout: 30_000,
    hookTimeout: 90_000,
    // One file at a time: several files start servers and load tests of their own, and on a
    // 2-core machine two of them together turn timings into flakes.
    fileParallelism: false,
  },
});
