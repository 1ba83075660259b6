/**
 * The SPIFFE Workload API wire layer: loads proto/spiffe/workload/workload.proto with proto-loader and
 * gives the generated client and service definition static types. Field names are the proto's own
 * (keepCase), bytes fields decode to Buffer, maps decode to plain objects.
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

// ---------------------------------------------------------------------------------------------------------
// Messages. Decoded messages carry every field (defaults: true); on encode, missing fields are defaults.
// ---------------------------------------------------------------------------------------------------------

export type X509SVIDRequest = Record<string, never>;
export type X509BundlesRequest = Record<string, never>;
export type JWTBundlesRequest = Record<string, never>;

export interface X509SVID {
  spiffe_id: string;
  /** Chain, leaf first, as concatenated DER. */
  x509_svid: Uint8Array;
  /** Unencrypted PKCS#8 DER. */
  x509_svid_key: Uint8Array;
  /** Concatenated DER CA certificates of the SVID's own trust domain. */
  bundle: Uint8Array;
  hint: string;
}

export interface X509SVIDResponse {
  svids: X509SVID[];
  crl: Uint8Array[];
  /** Keyed `spiffe://<trust-domain>`; values are concatenated DER CA certificates. */
  federated_bundles: Record<string, Uint8Array>;
}

export interface X509BundlesResponse {
  crl: Uint8Array[];
  bundles: Record<string, Uint8Array>;
}

export interface JWTSVIDRequest {
  audience: string[];
  spiffe_id: string;
}

export interface JWTSVID {
  spiffe_id: string;
  svid: string;
  hint: string;
}

export interface JWTSVIDResponse {
  svids: JWTSVID[];
}

export interface JWTBundlesResponse {
  /** Keyed `spiffe://<trust-domain>`; values are JWKS JSON documents. */
  bundles: Record<string, Uint8Array>;
}

export interface ValidateJWTSVIDRequest {
  audience: string;
  svid: string;
}

/**
 * google.protobuf.Value as proto-loader sees it with oneofs: the set member plus `kind` naming it on
 * decode; on encode only the member is needed. The names are camelCase despite keepCase because
 * protobufjs serves the well-known types from its built-in JSON descriptors, not from struct.proto.
 */
export interface ProtoValue {
  kind?: string;
  nullValue?: 'NULL_VALUE' | 0;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: ProtoStruct;
  listValue?: { values: ProtoValue[] };
}

export interface ProtoStruct {
  fields: Record<string, ProtoValue>;
}

export interface ValidateJWTSVIDResponse {
  spiffe_id: string;
  claims: ProtoStruct | null;
}

// ---------------------------------------------------------------------------------------------------------
// Client and service
// ---------------------------------------------------------------------------------------------------------

export interface WorkloadApiClient extends grpc.Client {
  FetchX509SVID(
    request: X509SVIDRequest,
    metadata: grpc.Metadata,
    options?: Partial<grpc.CallOptions>,
  ): grpc.ClientReadableStream<X509SVIDResponse>;
  FetchX509Bundles(
    request: X509BundlesRequest,
    metadata: grpc.Metadata,
    options?: Partial<grpc.CallOptions>,
  ): grpc.ClientReadableStream<X509BundlesResponse>;
  FetchJWTBundles(
    request: JWTBundlesRequest,
    metadata: grpc.Metadata,
    options?: Partial<grpc.CallOptions>,
  ): grpc.ClientReadableStream<JWTBundlesResponse>;
  FetchJWTSVID(
    request: JWTSVIDRequest,
    metadata: grpc.Metadata,
    options: Partial<grpc.CallOptions>,
    callback: grpc.requestCallback<JWTSVIDResponse>,
  ): grpc.ClientUnaryCall;
  ValidateJWTSVID(
    request: ValidateJWTSVIDRequest,
    metadata: grpc.Metadata,
    options: Partial<grpc.CallOptions>,
    callback: grpc.requestCallback<ValidateJWTSVIDResponse>,
  ): grpc.ClientUnaryCall;
}

export type WorkloadApiClientConstructor = new (
  address: string,
  credentials: grpc.ChannelCredentials,
  options?: grpc.ClientOptions,
) => WorkloadApiClient;

/** What a server implements; registered with `server.addService(proto.service, handlers)`. */
export interface WorkloadApiHandlers extends grpc.UntypedServiceImplementation {
  FetchX509SVID: grpc.handleServerStreamingCall<X509SVIDRequest, X509SVIDResponse>;
  FetchX509Bundles: grpc.handleServerStreamingCall<X509BundlesRequest, X509BundlesResponse>;
  FetchJWTSVID: grpc.handleUnaryCall<JWTSVIDRequest, JWTSVIDResponse>;
  FetchJWTBundles: grpc.handleServerStreamingCall<JWTBundlesRequest, JWTBundlesResponse>;
  ValidateJWTSVID: grpc.handleUnaryCall<ValidateJWTSVIDRequest, ValidateJWTSVIDResponse>;
}

export interface WorkloadApiProto {
  readonly Client: WorkloadApiClientConstructor;
  readonly service: grpc.ServiceDefinition;
}

/** The metadata every Workload API call carries; servers refuse calls without it. */
export const WORKLOAD_API_HEADER = 'workload.spiffe.io';

const PROTO_RELATIVE_PATH = join('proto', 'spiffe', 'workload', 'workload.proto');

const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

// The package definition is immutable once loaded, so one copy per proto path is shared; the grpc
// objects built from it are created per factory call and owned by the caller.
const definitionCache = new Map<string, protoLoader.PackageDefinition>();

/**
 * Finds the proto by walking up from this module: the same code runs from `src/` under tsx and from
 * `dist/src/` once built, and both sit under the repository root that holds `proto/`.
 */
export function findWorkloadProtoPath(start = dirname(fileURLToPath(import.meta.url))): string {
  let dir = resolve(start);
  for (;;) {
    const candidate = join(dir, PROTO_RELATIVE_PATH);
    if (existsSync(candidate)) return candidate;
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`workload api: ${PROTO_RELATIVE_PATH} not found above ${start}`);
    dir = parent;
  }
}

/** Loads the Workload API proto and returns the client constructor and service definition. */
export function loadWorkloadApiProto(protoPath = findWorkloadProtoPath()): WorkloadApiProto {
  let definition = definitionCache.get(protoPath);
  if (definition === undefined) {
    // includeDirs lets `import "google/protobuf/struct.proto"` resolve; proto-loader (protobufjs)
    // ships the well-known types itself.
    definition = protoLoader.loadSync(protoPath, {
      ...LOADER_OPTIONS,
      includeDirs: [dirname(dirname(dirname(protoPath)))],
    });
    definitionCache.set(protoPath, definition);
  }
  const pkg = grpc.loadPackageDefinition(definition);
  const ctor = pkg['SpiffeWorkloadAPI'];
  if (typeof ctor !== 'function' || !('service' in ctor)) {
    throw new Error('workload api: SpiffeWorkloadAPI service missing from proto');
  }
  const Client = ctor as unknown as WorkloadApiClientConstructor & { service: grpc.ServiceDefinition };
  return Object.freeze({ Client, service: Client.service });
}

/** Metadata carrying the Workload API security header. */
export function workloadApiMetadata(): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set(WORKLOAD_API_HEADER, 'true');
  return md;
}

// ---------------------------------------------------------------------------------------------------------
// google.protobuf.Struct <-> plain JSON
// ---------------------------------------------------------------------------------------------------------

/** Converts a JSON-compatible object to a Struct; non-JSON values (undefined, functions) are dropped. */
export function toProtoStruct(obj: Record<string, unknown>): ProtoStruct {
  const fields: Record<string, ProtoValue> = {};
  for (const [key, value] of Object.entries(obj)) {
    const converted = toProtoValue(value);
    if (converted !== undefined) fields[key] = converted;
  }
  return { fields };
}

function toProtoValue(value: unknown): ProtoValue | undefined {
  if (value === null) return { nullValue: 'NULL_VALUE' };
  switch (typeof value) {
    case 'number':
      return { numberValue: value };
    case 'string':
      return { stringValue: value };
    case 'boolean':
      return { boolValue: value };
    case 'object':
      if (Array.isArray(value)) {
        return { listValue: { values: value.map((v) => toProtoValue(v) ?? { nullValue: 'NULL_VALUE' }) } };
      }
      return { structValue: toProtoStruct(value as Record<string, unknown>) };
    default:
      return undefined;
  }
}

/** Converts a decoded Struct back to plain JSON. */
export function fromProtoStruct(struct: ProtoStruct | null | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (!struct) return out;
  for (const [key, value] of Object.entries(struct.fields)) out[key] = fromProtoValue(value);
  return out;
}

function fromProtoValue(value: ProtoValue): unknown {
  switch (value.kind) {
    case 'numberValue':
      return value.numberValue;
    case 'stringValue':
      return value.stringValue;
    case 'boolValue':
      return value.boolValue;
    case 'structValue':
      return fromProtoStruct(value.structValue);
    case 'listValue':
      return (value.listValue?.values ?? []).map(fromProtoValue);
    default:
      return null;
  }
}
