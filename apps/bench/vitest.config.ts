import "../../scripts/vitest-node20.js";
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["src/**/*.test.ts"],
    // The smoke run seeds a database, starts the server and drives every scenario for 2 s.
    testTimeout: 300_000,
    hookTimeout: 120_000,
  },
});
