import "../../scripts/vitest-node20.js";
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["src/**/*.test.ts"],
    // Real servers on a real PostgreSQL; the pack test also runs `npm install` from the registry.
    testTimeout: 30_000,
    hookTimeout: 120_000,
  },
});
