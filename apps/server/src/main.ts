#!/usr/bin/env node
import { ConfigError, loadConfig } from "./config.js";
import { createLogger } from "./log.js";
import { startApp } from "./app.js";

// Configuration is read once and checked before anything starts: a bad value stops the
// service with a message that names the variable.
let config;
try {
  config = loadConfig(process.env);
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`account-balance: configuration error: ${err.message}\n`);
    process.exit(1);
  }
  throw err;
}

const log = createLogger(config.logLevel);
const SECOND_SIGNAL_AFTER_MS = 2_000;
let app;
try {
  app = await startApp(config, log);
} catch (err) {
  log.error("failed to start", { error: err instanceof Error ? err.message : String(err) });
  process.exit(1);
}

let stoppingSince: number | undefined;
const stop = (signal: string) => {
  if (stoppingSince !== undefined) {
    // The same Ctrl-C can arrive twice (from the terminal and from pnpm, which forwards it).
    if (Date.now() - stoppingSince < SECOND_SIGNAL_AFTER_MS) return;
    // A later one is the operator saying "now": the calls still running are cut, and a write
    // among them may or may not have taken effect (retry with its idempotency key).
    log.warn("second signal: exiting without waiting for the calls in flight", { signal });
    process.exit(1);
  }
  stoppingSince = Date.now();
  log.info("draining", { signal });
  app.close().then(
    () => {
      log.info("stopped");
      process.exit(0);
    },
    (err: unknown) => {
      log.error("unclean stop", { error: err instanceof Error ? err.name : String(err) });
      process.exit(1);
    },
  );
};
// A promise nobody awaited must not end every call in flight with it: logged by name (no
// message, which may carry data), and the service keeps serving.
process.on("unhandledRejection", (err: unknown) => {
  log.error("unhandled rejection", { error: err instanceof Error ? err.name : typeof err });
});
process.on("SIGTERM", () => stop("SIGTERM"));
process.on("SIGINT", () => stop("SIGINT"));
