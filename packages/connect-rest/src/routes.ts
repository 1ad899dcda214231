// google.api.http rules -> a route table, and matching a request path against it.
//
// Template grammar (google/api/http.proto), plus "/" alone for the zero-segment path:
//   Template = "/" [ Segments ] [ ":" Verb ]
//   Segment  = "*" | "**" | LITERAL | "{" FieldPath [ "=" Segments ] "}"
import type { DescField, DescMessage, DescMethod, DescService } from "@bufbuild/protobuf";
import { getOption, hasOption } from "@bufbuild/protobuf";
import { http } from "@account-balance/proto/google/api/annotations_pb.js";
import type { HttpRule } from "@account-balance/proto/google/api/http_pb.js";

/** One segment of a path template: a literal, `*` (one segment) or `**` (the rest, zero or more). */
export type PathSegment =
  | { readonly kind: "literal"; readonly value: string }
  | { readonly kind: "single" }
  | { readonly kind: "multi" };

/** A `{field.path=...}` variable: it captures segments [start, end) (`end` undefined = to the end). */
export interface PathVariable {
  readonly fieldPath: readonly string[];
  readonly start: number;
  readonly end: number | undefined;
}

export interface PathTemplate {
  /** The template as written in the rule, e.g. "/{id}/credit". */
  readonly template: string;
  readonly segments: readonly PathSegment[];
  readonly variables: readonly PathVariable[];
  /** The custom verb after the last ":" (e.g. "cancel" in "/{id}:cancel"), if any. */
  readonly verb: string | undefined;
}

/** A parsed path variable bound to the request field it fills. */
export interface BoundVariable extends PathVariable {
  readonly fields: readonly DescField[];
}

export interface RestRoute {
  readonly service: DescService;
  readonly method: DescMethod;
  /** Upper case: GET, POST, PUT, DELETE, PATCH, or a custom rule's kind. */
  readonly httpMethod: string;
  readonly path: PathTemplate;
  readonly variables: readonly BoundVariable[];
  /** "" (no body), "*" (the whole request) or the name of the request field the body fills. */
  readonly body: string;
  /** The request field the body fills, when `body` names one. */
  readonly bodyField: DescField | undefined;
  /** The response field rendered as the body ("" = the whole response). */
  readonly responseBody: string;
  readonly responseBodyField: DescField | undefined;
  /** Declaration order; breaks ties between equally specific templates. */
  readonly order: number;
}

export class PathTemplateError extends Error {
  constructor(template: string, reason: string) {
    super(`invalid path template ${JSON.stringify(template)}: ${reason}`);
    this.name = "PathTemplateError";
  }
}

const literalRe = /^[^/{}*:=]+$/;
const fieldPathRe = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$/;

/** Parses a google.api.http path template. Throws PathTemplateError on a malformed one. */
export function parsePathTemplate(template: string): PathTemplate {
  if (!template.startsWith("/")) throw new PathTemplateError(template, 'must start with "/"');
  let rest = template.slice(1);
  let verb: string | undefined;
  const colon = rest.lastIndexOf(":");
  if (colon >= 0 && colon > rest.lastIndexOf("}") && colon > rest.lastIndexOf("/")) {
    verb = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!literalRe.test(verb)) throw new PathTemplateError(template, "malformed verb");
  }
  const segments: PathSegment[] = [];
  const variables: PathVariable[] = [];
  const parts = rest === "" ? [] : splitTopLevel(rest, template);
  for (const part of parts) {
    if (part.startsWith("{")) {
      if (!part.endsWith("}")) throw new PathTemplateError(template, `unclosed variable ${part}`);
      const inner = part.slice(1, -1);
      const eq = inner.indexOf("=");
      const fieldPath = eq < 0 ? inner : inner.slice(0, eq);
      const pattern = eq < 0 ? "*" : inner.slice(eq + 1);
      if (!fieldPathRe.test(fieldPath)) throw new PathTemplateError(template, `bad field path ${fieldPath}`);
      const start = segments.length;
      for (const p of pattern.split("/")) segments.push(plainSegment(p, template));
      const multi = segments.slice(start).some((s) => s.kind === "multi");
      variables.push({ fieldPath: fieldPath.split("."), start, end: multi ? undefined : segments.length });
    } else {
      segments.push(plainSegment(part, template));
    }
  }
  const multiAt = segments.findIndex((s) => s.kind === "multi");
  if (multiAt >= 0 && multiAt !== segments.length - 1) {
    throw new PathTemplateError(template, '"**" must be the last segment');
  }
  const seen = new Set<string>();
  for (const v of variables) {
    const key = v.fieldPath.join(".");
    if (seen.has(key)) throw new PathTemplateError(template, `variable ${key} appears twice`);
    seen.add(key);
  }
  return { template, segments, variables, verb };
}

function splitTopLevel(s: string, template: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let cur = "";
  for (const ch of s) {
    if (ch === "{") depth++;
    if (ch === "}") depth--;
    if (depth < 0 || depth > 1) throw new PathTemplateError(template, "unbalanced braces");
    if (ch === "/" && depth === 0) {
      parts.push(cur);
      cur = "";
    } else {
      cur += ch;
    }
  }
  if (depth !== 0) throw new PathTemplateError(template, "unbalanced braces");
  parts.push(cur);
  return parts;
}

function plainSegment(p: string, template: string): PathSegment {
  if (p === "*") return { kind: "single" };
  if (p === "**") return { kind: "multi" };
  if (!literalRe.test(p)) throw new PathTemplateError(template, `bad segment ${JSON.stringify(p)}`);
  return { kind: "literal", value: p };
}

/**
 * Splits a URL pathname (already relative to the base path) into decoded segments.
 * Returns undefined when a segment has a malformed percent-encoding.
 * "" and "/" are the zero-segment path; one trailing slash is ignored.
 */
export function splitPath(pathname: string): string[] | undefined {
  let p = pathname.startsWith("/") ? pathname.slice(1) : pathname;
  if (p.endsWith("/")) p = p.slice(0, -1);
  if (p === "") return [];
  try {
    return p.split("/").map((s) => decodeURIComponent(s));
  } catch {
    return undefined;
  }
}

/**
 * Values of a template's variables by field path ("size.width"; multi-segment values joined
 * with "/"), or undefined if the path does not match.
 */
export function matchPathTemplate(t: PathTemplate, segments: readonly string[]): Map<string, string> | undefined {
  let segs = segments;
  if (t.verb !== undefined) {
    const last = segs[segs.length - 1];
    const suffix = `:${t.verb}`;
    if (last === undefined || !last.endsWith(suffix)) return undefined;
    segs = [...segs.slice(0, -1), last.slice(0, -suffix.length)];
  }
  const multi = t.segments[t.segments.length - 1]?.kind === "multi";
  if (multi ? segs.length < t.segments.length - 1 : segs.length !== t.segments.length) return undefined;
  for (let i = 0; i < t.segments.length; i++) {
    const s = t.segments[i]!;
    const v = segs[i];
    if (s.kind === "literal" && v !== s.value) return undefined;
    if (s.kind === "single" && (v === undefined || v === "")) return undefined;
  }
  const values = new Map<string, string>();
  for (const v of t.variables) values.set(v.fieldPath.join("."), segs.slice(v.start, v.end).join("/"));
  return values;
}

const rank = { literal: 0, single: 1, multi: 2 } as const;

/**
 * Orders templates most specific first: at the first position where they differ, a literal
 * beats `*`, which beats `**` (so "/me/balances" and "/expiring" win over "/{id}").
 */
export function compareSpecificity(a: PathTemplate, b: PathTemplate): number {
  const n = Math.min(a.segments.length, b.segments.length);
  for (let i = 0; i < n; i++) {
    const d = rank[a.segments[i]!.kind] - rank[b.segments[i]!.kind];
    if (d !== 0) return d;
  }
  if (a.segments.length !== b.segments.length) return b.segments.length - a.segments.length;
  return (a.verb === undefined ? 1 : 0) - (b.verb === undefined ? 1 : 0);
}

/** Finds a field path (proto names; json names accepted too) in a message. */
export function resolveFieldPath(message: DescMessage, path: readonly string[]): DescField[] | undefined {
  const fields: DescField[] = [];
  let msg: DescMessage | undefined = message;
  for (const name of path) {
    if (msg === undefined) return undefined;
    const f: DescField | undefined = msg.fields.find((x) => x.name === name) ?? msg.fields.find((x) => x.jsonName === name);
    if (f === undefined) return undefined;
    fields.push(f);
    msg = f.fieldKind === "message" ? f.message : undefined;
  }
  return fields;
}

function ruleBindings(rule: HttpRule): { httpMethod: string; path: string }[] {
  const p = rule.pattern;
  switch (p.case) {
    case "get":
    case "put":
    case "post":
    case "delete":
    case "patch":
      return [{ httpMethod: p.case.toUpperCase(), path: p.value }];
    case "custom":
      return [{ httpMethod: p.value.kind.toUpperCase(), path: p.value.path }];
    default:
      return [];
  }
}

/**
 * Reads the google.api.http rule (and its additional_bindings) of every method of the given
 * services. Methods without a rule are skipped. Throws on a malformed template, a variable or
 * body naming a field the request lacks, or two methods claiming the same method and path.
 */
export function buildRoutes(services: readonly DescService[]): RestRoute[] {
  const routes: RestRoute[] = [];
  const claimed = new Map<string, string>();
  for (const service of services) {
    for (const method of service.methods) {
      if (!hasOption(method, http)) continue;
      const top = getOption(method, http);
      for (const rule of [top, ...top.additionalBindings]) {
        for (const { httpMethod, path } of ruleBindings(rule)) {
          const where = `${service.typeName}.${method.name} (${httpMethod} ${path})`;
          const template = parsePathTemplate(path);
          const variables = template.variables.map((v): BoundVariable => {
            const fields = resolveFieldPath(method.input, v.fieldPath);
            const leaf = fields?.[fields.length - 1];
            if (fields === undefined || leaf === undefined || (leaf.fieldKind !== "scalar" && leaf.fieldKind !== "enum")) {
              throw new Error(`${where}: path variable ${v.fieldPath.join(".")} is not a singular scalar field of ${method.input.typeName}`);
            }
            return { ...v, fields };
          });
          const body = rule.body;
          let bodyField: DescField | undefined;
          if (body !== "" && body !== "*") {
            bodyField = method.input.fields.find((f) => f.name === body);
            if (bodyField === undefined) throw new Error(`${where}: body field ${body} not in ${method.input.typeName}`);
          }
          let responseBodyField: DescField | undefined;
          if (rule.responseBody !== "") {
            responseBodyField = method.output.fields.find((f) => f.name === rule.responseBody);
            if (responseBodyField === undefined) {
              throw new Error(`${where}: response_body field ${rule.responseBody} not in ${method.output.typeName}`);
            }
          }
          const key = `${httpMethod} ${shapeOf(template)}`;
          const prior = claimed.get(key);
          if (prior !== undefined) throw new Error(`${where}: same route as ${prior}`);
          claimed.set(key, where);
          routes.push({
            service,
            method,
            httpMethod,
            path: template,
            variables,
            body,
            bodyField,
            responseBody: rule.responseBody,
            responseBodyField,
            order: routes.length,
          });
        }
      }
    }
  }
  return routes;
}

function shapeOf(t: PathTemplate): string {
  const segs = t.segments.map((s) => (s.kind === "literal" ? s.value : s.kind === "single" ? "*" : "**"));
  return "/" + segs.join("/") + (t.verb === undefined ? "" : `:${t.verb}`);
}

export type RouteMatch =
  | { readonly kind: "found"; readonly route: RestRoute; readonly values: Map<string, string> }
  /** The path exists, but not for this HTTP method. */
  | { readonly kind: "method-not-allowed"; readonly allowed: readonly string[] }
  | { readonly kind: "not-found" };

/** Picks the most specific route for the method and path segments (see compareSpecificity). */
export function matchRoute(routes: readonly RestRoute[], httpMethod: string, segments: readonly string[]): RouteMatch {
  let best: { route: RestRoute; values: Map<string, string> } | undefined;
  const allowed = new Set<string>();
  for (const route of routes) {
    const values = matchPathTemplate(route.path, segments);
    if (values === undefined) continue;
    allowed.add(route.httpMethod);
    if (route.httpMethod !== httpMethod) continue;
    if (best === undefined) {
      best = { route, values };
      continue;
    }
    const c = compareSpecificity(route.path, best.route.path);
    if (c < 0 || (c === 0 && route.order < best.route.order)) best = { route, values };
  }
  if (best !== undefined) return { kind: "found", ...best };
  if (allowed.size > 0) return { kind: "method-not-allowed", allowed: [...allowed].sort() };
  return { kind: "not-found" };
}
