import { create, fromBinary, toBinary, type DescExtension, type DescFile } from "@bufbuild/protobuf";
import { nestedTypes } from "@bufbuild/protobuf/reflect";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, type ConnectRouter } from "@connectrpc/connect";
import * as v1 from "@account-balance/proto/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "@account-balance/proto/grpc/reflection/v1alpha/reflection_pb.js";

/**
 * gRPC server reflection (grpc.reflection.v1 and the older v1alpha that many tools still
 * call first), so grpcurl, Postman and friends can list and describe the API without the
 * .proto files. Answers come from the generated descriptors.
 */

type Request = v1.ServerReflectionRequest;
type Response = v1.ServerReflectionResponse;

/**
 * Serves reflection for every service registered on the router (looked up when a client
 * asks, so registration order does not matter) plus the services declared in `files`.
 * Descriptors of those files and all their imports can be fetched.
 */
export function registerReflection(router: ConnectRouter, files: readonly DescFile[] = []): void {
  let index: ReflectionIndex | undefined;
  const getIndex = () => (index ??= buildIndex(router, files));

  router.service(v1.ServerReflection, {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) yield answer(getIndex(), req);
    },
  });

  // v1alpha is wire-identical to v1 (same fields, same numbers): translate through bytes.
  router.service(v1alpha.ServerReflection, {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) {
        const asV1 = fromBinary(v1.ServerReflectionRequestSchema, toBinary(v1alpha.ServerReflectionRequestSchema, req));
        const res = answer(getIndex(), asV1);
        yield fromBinary(v1alpha.ServerReflectionResponseSchema, toBinary(v1.ServerReflectionResponseSchema, res));
      }
    },
  });
}

interface ReflectionIndex {
  services: string[];
  byName: Map<string, DescFile>;
  bySymbol: Map<string, DescFile>;
  extensionsOf: Map<string, DescExtension[]>;
}

function buildIndex(router: ConnectRouter, files: readonly DescFile[]): ReflectionIndex {
  const roots = new Set<DescFile>(files);
  const services = new Set<string>();
  for (const h of router.handlers) {
    roots.add(h.service.file);
    services.add(h.service.typeName);
  }
  for (const f of files) for (const s of f.services) services.add(s.typeName);

  const byName = new Map<string, DescFile>();
  const visit = (f: DescFile) => {
    if (byName.has(f.proto.name)) return;
    byName.set(f.proto.name, f);
    f.dependencies.forEach(visit);
  };
  roots.forEach(visit);

  const bySymbol = new Map<string, DescFile>();
  const extensionsOf = new Map<string, DescExtension[]>();
  for (const file of byName.values()) {
    for (const t of nestedTypes(file)) {
      bySymbol.set(t.typeName, file);
      switch (t.kind) {
        case "message":
          for (const f of t.fields) bySymbol.set(`${t.typeName}.${f.name}`, file);
          for (const o of t.oneofs) bySymbol.set(`${t.typeName}.${o.name}`, file);
          break;
        case "enum": {
          // Enum values are scoped like their enum's siblings, not inside the enum.
          const scope = t.typeName.slice(0, Math.max(0, t.typeName.lastIndexOf(".")));
          for (const v of t.values) bySymbol.set(scope ? `${scope}.${v.name}` : v.name, file);
          break;
        }
        case "service":
          for (const m of t.methods) bySymbol.set(`${t.typeName}.${m.name}`, file);
          break;
        case "extension": {
          const list = extensionsOf.get(t.extendee.typeName) ?? [];
          list.push(t);
          extensionsOf.set(t.extendee.typeName, list);
          break;
        }
      }
    }
  }
  return { services: [...services].sort(), byName, bySymbol, extensionsOf };
}

function answer(index: ReflectionIndex, req: Request): Response {
  const base = { validHost: req.host, originalRequest: req };
  const error = (code: Code, message: string): Response =>
    create(v1.ServerReflectionResponseSchema, {
      ...base,
      messageResponse: { case: "errorResponse", value: { errorCode: code, errorMessage: message } },
    });
  const fileResponse = (file: DescFile | undefined, notFound: string): Response => {
    if (!file) return error(Code.NotFound, notFound);
    return create(v1.ServerReflectionResponseSchema, {
      ...base,
      messageResponse: { case: "fileDescriptorResponse", value: { fileDescriptorProto: withDependencies(file) } },
    });
  };

  const r = req.messageRequest;
  switch (r.case) {
    case "listServices":
      return create(v1.ServerReflectionResponseSchema, {
        ...base,
        messageResponse: { case: "listServicesResponse", value: { service: index.services.map((name) => ({ name })) } },
      });
    case "fileByFilename":
      return fileResponse(index.byName.get(r.value), `file ${r.value} not found`);
    case "fileContainingSymbol":
      return fileResponse(index.bySymbol.get(stripDot(r.value)), `symbol ${r.value} not found`);
    case "fileContainingExtension": {
      const type = stripDot(r.value.containingType);
      const ext = index.extensionsOf.get(type)?.find((e) => e.number === r.value.extensionNumber);
      return fileResponse(ext?.file, `extension ${r.value.extensionNumber} of ${type} not found`);
    }
    case "allExtensionNumbersOfType": {
      const type = stripDot(r.value);
      if (!index.bySymbol.has(type)) return error(Code.NotFound, `type ${r.value} not found`);
      const numbers = (index.extensionsOf.get(type) ?? []).map((e) => e.number).sort((a, b) => a - b);
      return create(v1.ServerReflectionResponseSchema, {
        ...base,
        messageResponse: { case: "allExtensionNumbersResponse", value: { baseTypeName: type, extensionNumber: numbers } },
      });
    }
    default:
      return error(Code.InvalidArgument, "message_request is not set");
  }
}

/** The file first, then everything it imports, transitively, each once. */
function withDependencies(file: DescFile): Uint8Array[] {
  const out: Uint8Array[] = [];
  const seen = new Set<string>();
  const visit = (f: DescFile) => {
    if (seen.has(f.proto.name)) return;
    seen.add(f.proto.name);
    out.push(toBinary(FileDescriptorProtoSchema, f.proto));
    f.dependencies.forEach(visit);
  };
  visit(file);
  return out;
}

function stripDot(name: string): string {
  return name.startsWith(".") ? name.slice(1) : name;
}
