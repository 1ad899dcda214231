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
let app;
try {
  app = await startApp(config, log);
} catch (err) {
  log.error("failed to start", { error: err instanceof Error ? err.message : String(err) });
  process.exit(1);
}

let stopping = false;
const stop = (signal: string) => {
  if (stopping) return;
  stopping = true;
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
