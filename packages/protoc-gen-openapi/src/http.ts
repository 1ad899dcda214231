// google.api.http rules of the methods, read with the extension descriptor found in the
// request's own files (google/api/annotations.proto is an import of the contract), so this
// plugin needs no generated code of the contract and builds before it.
import type { DescExtension, DescFile, DescMethod, DescService } from "@bufbuild/protobuf";
import { getOption, hasOption } from "@bufbuild/protobuf";

/** One binding of a method to an HTTP method and path template. */
export interface HttpBinding {
  readonly service: DescService;
  readonly method: DescMethod;
  /** Lower case: get, put, post, delete, patch (or a custom kind). */
  readonly verb: string;
  /** The template as written, relative to the base path, e.g. "/{id}/credit". */
  readonly template: string;
  /** "" (no body), "*" (the whole request) or a request field name. */
  readonly body: string;
  /** "" (the whole response) or a response field name. */
  readonly responseBody: string;
}

/** The shape of google.api.HttpRule as protobuf-es creates it from the descriptor. */
interface HttpRuleShape {
  pattern: { case: string | undefined; value?: unknown };
  body: string;
  responseBody: string;
  additionalBindings: HttpRuleShape[];
}

/** The google.api.http extension declared in one of the files, if any file declares it. */
export function findHttpExtension(allFiles: readonly DescFile[]): DescExtension | undefined {
  for (const file of allFiles) {
    for (const ext of file.extensions) if (ext.typeName === "google.api.http") return ext;
  }
  return undefined;
}

/** Every binding of every method of the services, in declaration order. */
export function httpBindings(services: readonly DescService[], ext: DescExtension | undefined): HttpBinding[] {
  if (ext === undefined) return [];
  const out: HttpBinding[] = [];
  for (const service of services) {
    for (const method of service.methods) {
      if (!hasOption(method, ext)) continue;
      const top = getOption(method, ext) as unknown as HttpRuleShape;
      for (const rule of [top, ...top.additionalBindings]) {
        const p = rule.pattern;
        let verb: string | undefined;
        let template: string | undefined;
        if (p.case === "custom") {
          const c = p.value as { kind: string; path: string };
          verb = c.kind.toLowerCase();
          template = c.path;
        } else if (p.case !== undefined) {
          verb = p.case;
          template = p.value as string;
        }
        if (verb === undefined || template === undefined) continue;
        out.push({ service, method, verb, template, body: rule.body, responseBody: rule.responseBody });
      }
    }
  }
  return out;
}

/** A path template's variables, in order: `{id}` -> "id", `{name=shelves/*}` -> "name". */
export function templateVariables(template: string): string[] {
  return [...template.matchAll(/\{([^}=]+)(=[^}]*)?\}/g)].map((m) => m[1]!);
}

/** The OpenAPI path of a template under a base path: "/" alone is the base path itself. */
export function openApiPath(basePath: string, template: string): string {
  const path = template.replace(/\{([^}=]+)(=[^}]*)?\}/g, "{$1}");
  const base = basePath.replace(/\/+$/, "");
  if (path === "/" || path === "") return base === "" ? "/" : base;
  return base + path;
}
