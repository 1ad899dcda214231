// Lays out the third-party .proto files the contract imports, from the npm packages that
// ship them, in the git-ignored folder third_party/. Nothing here is committed.
//
// buf/validate/validate.proto ships only as a compiled descriptor inside
// @bufbuild/protovalidate, so its structure (no options) is printed back to .proto source:
// that is all buf needs to compile `(buf.validate.field)` rules. Generated code maps the
// import to the package's own full descriptor (see buf.gen.yaml), so the real rules apply.
import { cpSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "third_party");

const pkgDir = (name) => dirname(require.resolve(`${name}/package.json`));

rmSync(out, { recursive: true, force: true });
const copy = (from, to) => {
  mkdirSync(dirname(join(out, to)), { recursive: true });
  cpSync(from, join(out, to));
};

const gpf = pkgDir("google-proto-files");
for (const f of ["google/api/annotations.proto", "google/api/http.proto", "google/rpc/error_details.proto"]) {
  copy(join(gpf, f), f);
}
// error_details.proto imports duration.proto; buf provides google/protobuf/* itself (WKT).
copy(join(pkgDir("grpc-health-check"), "proto/health/v1/health.proto"), "grpc/health/v1/health.proto");
const refl = join(pkgDir("@grpc/reflection"), "build/proto/grpc/reflection");
copy(join(refl, "v1/reflection.proto"), "grpc/reflection/v1/reflection.proto");
copy(join(refl, "v1alpha/reflection.proto"), "grpc/reflection/v1alpha/reflection.proto");


// --- a minimal printer of FileDescriptorProto structure (proto2/editions semantics kept
// by the descriptor's own syntax; options are left out on purpose) ---
function printFile(fd) {
  const lines = [];
  const syntax = fd.syntax || "proto2";
  if (syntax === "editions") {
    throw new Error("validate.proto in editions syntax is not supported by this printer");
  }
  lines.push(`syntax = "${syntax}";`, `package ${fd.package};`);
  for (const dep of fd.dependency) lines.push(`import "${dep}";`);
  for (const e of fd.enumType) printEnum(e, lines, "");
  for (const m of fd.messageType) printMessage(m, lines, "", syntax);
  printExtensions(fd.extension, lines, "", syntax);
  return lines.join("\n") + "\n";
}

const TYPE = {
  1: "double", 2: "float", 3: "int64", 4: "uint64", 5: "int32", 6: "fixed64", 7: "fixed32",
  8: "bool", 9: "string", 12: "bytes", 13: "uint32", 15: "sfixed32", 16: "sfixed64",
  17: "sint32", 18: "sint64",
};
const has = (obj, key) => Object.prototype.hasOwnProperty.call(obj, key);

function typeName(f) {
  // 10 = group, 11 = message, 14 = enum
  if (f.type === 11 || f.type === 14 || f.type === 10) return f.typeName;
  return TYPE[f.type];
}

function fieldLine(f, syntax, inOneof) {
  let label = "";
  if (!inOneof) {
    if (f.label === 3) label = "repeated ";
    else if (f.label === 2) label = "required ";
    else if (syntax === "proto2" || (has(f, "proto3Optional") && f.proto3Optional)) label = "optional ";
  }
  return `${label}${typeName(f)} ${f.name} = ${f.number};`;
}

function printEnum(e, lines, ind) {
  lines.push(`${ind}enum ${e.name} {`);
  for (const v of e.value) lines.push(`${ind}  ${v.name} = ${v.number};`);
  lines.push(`${ind}}`);
}

function printMessage(m, lines, ind, syntax) {
  lines.push(`${ind}message ${m.name} {`);
  const inner = ind + "  ";
  for (const e of m.enumType) printEnum(e, lines, inner);
  for (const n of m.nestedType) printMessage(n, lines, inner, syntax);
  const oneofFields = new Map();
  for (const f of m.field) {
    // An unset proto2 field is not an own property: test presence, not the value.
    const synthetic = has(f, "proto3Optional") && f.proto3Optional;
    if (has(f, "oneofIndex") && !synthetic) {
      if (!oneofFields.has(f.oneofIndex)) oneofFields.set(f.oneofIndex, []);
      oneofFields.get(f.oneofIndex).push(f);
    } else {
      lines.push(`${inner}${fieldLine(f, syntax, false)}`);
    }
  }
  for (const [idx, fields] of oneofFields) {
    lines.push(`${inner}oneof ${m.oneofDecl[idx].name} {`);
    for (const f of fields) lines.push(`${inner}  ${fieldLine(f, syntax, true)}`);
    lines.push(`${inner}}`);
  }
  for (const r of m.extensionRange) {
    const end = r.end - 1;
    lines.push(`${inner}extensions ${r.start} to ${end >= 536870911 ? "max" : end};`);
  }
  for (const r of m.reservedRange) lines.push(`${inner}reserved ${r.start} to ${r.end - 1};`);
  printExtensions(m.extension, lines, inner, syntax);
  lines.push(`${ind}}`);
}

function printExtensions(exts, lines, ind, syntax) {
  const byExtendee = new Map();
  for (const x of exts) {
    if (!byExtendee.has(x.extendee)) byExtendee.set(x.extendee, []);
    byExtendee.get(x.extendee).push(x);
  }
  for (const [extendee, xs] of byExtendee) {
    lines.push(`${ind}extend ${extendee} {`);
    for (const x of xs) lines.push(`${ind}  ${fieldLine(x, syntax, false)}`);
    lines.push(`${ind}}`);
  }
}

const { file_buf_validate_validate } = await import("@bufbuild/protovalidate/gen/buf/validate/validate_pb.js");
mkdirSync(join(out, "buf/validate"), { recursive: true });
writeFileSync(join(out, "buf/validate/validate.proto"), printFile(file_buf_validate_validate.proto));
