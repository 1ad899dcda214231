// The protoc plugin: one file, openapi.json, for the services of the files to generate.
// Run it with buf's `strategy: all` so that it sees the whole contract in one request.
import { createEcmaScriptPlugin, type Schema } from "@bufbuild/protoplugin";
import { buildOpenApi, defaultOptions, type OpenApiOptions } from "./openapi.js";

export const OUTPUT_FILE = "openapi.json";

/**
 * Plugin options (buf.gen.yaml `opt`):
 *   base_path=/bridge-payment/account-balance   prefix of every route
 *   title=..., version=..., description=...     the document's info
 *   created=CreateBalance                       (repeatable) methods answering 201; default: POST "/"
 *   error_reason_enum=accountbalance.v1.ErrorReason   the enum of error codes; default: the one named ErrorReason
 *   idempotency_header=Idempotency-Key
 */
export function parseOptions(raw: { key: string; value: string }[]): OpenApiOptions {
  const out: OpenApiOptions = { ...defaultOptions, created: [] };
  const created: string[] = [];
  for (const { key, value } of raw) {
    switch (key) {
      case "base_path":
        out.basePath = value === "" || value === "/" ? "" : `/${value.replace(/^\/+|\/+$/g, "")}`;
        break;
      case "title":
        out.title = value;
        break;
      case "version":
        out.version = value;
        break;
      case "description":
        out.description = value;
        break;
      case "created":
        created.push(value);
        break;
      case "error_reason_enum":
        out.errorReasonEnum = value;
        break;
      case "idempotency_header":
        out.idempotencyHeader = value;
        break;
      default:
        throw new Error(`unknown option ${key}`);
    }
  }
  out.created = created;
  return out;
}

function generate(schema: Schema<OpenApiOptions>, target: "ts" | "js" | "dts"): void {
  // The document does not depend on the target: write it once, for the first one asked for.
  if (target !== schema.targets[0]) return;
  const doc = buildOpenApi(schema.files, schema.allFiles, schema.options);
  schema.generateFile(OUTPUT_FILE).print(JSON.stringify(doc, null, 2));
}

export const protocGenOpenApi = createEcmaScriptPlugin<OpenApiOptions>({
  name: "protoc-gen-openapi",
  version: "v0.1.0",
  parseOptions,
  generateTs: generate,
  generateJs: generate,
  generateDts: generate,
});
