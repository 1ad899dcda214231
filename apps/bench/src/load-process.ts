import { runLoad, type RunSpec } from "./worker.js";

// The entry of the forked load process: one run, its result over IPC, then exit.
process.once("message", (spec: RunSpec) => {
  runLoad(spec).then(
    (result) => process.send!({ result }, () => process.exit(0)),
    (err: unknown) => process.send!({ error: err instanceof Error ? (err.stack ?? err.message) : String(err) }, () => process.exit(1)),
  );
});
