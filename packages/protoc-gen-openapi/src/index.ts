export { buildOpenApi, defaultOptions, securitySchemes, type OpenApiOptions } from "./openapi.js";
export { OUTPUT_FILE, parseOptions, protocGenOpenApi } from "./plugin.js";
export type { JsonSchema, JsonValue } from "./json-schema.js";
