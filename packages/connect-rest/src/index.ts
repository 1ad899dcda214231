export {
  createRestGateway,
  defaultFormatError,
  httpStatusFromCode,
  jsonHiddenProblem,
  restCallKey,
  type NodeRequest,
  type NodeResponse,
  type RestCallInfo,
  type RestErrorContext,
  type RestGateway,
  type RestGatewayOptions,
  type RestResponse,
  type RestSuccessContext,
} from "./gateway.js";
export { createUnaryInvoker, implementation, type Implementation, type UnaryCall, type UnaryInvoker, type UnaryOutcome } from "./unary.js";
export { enumFromRest, enumToRest, restEnumName, toRestJson, type RestJsonOptions } from "./json.js";
export { buildRequest, buildRequestJson, normalizeMessageJson, type RequestParts } from "./request.js";
export {
  buildRoutes,
  compareSpecificity,
  matchPathTemplate,
  matchRoute,
  parsePathTemplate,
  PathTemplateError,
  resolveFieldPath,
  splitPath,
  type BoundVariable,
  type PathSegment,
  type PathTemplate,
  type PathVariable,
  type RestRoute,
  type RouteMatch,
} from "./routes.js";
