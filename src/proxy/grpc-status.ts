/**
 * gRPC statuses as HTTP statuses, for the decisions Envoy makes on them: outlier detection and the
 * upstream's success/error accounting use the HTTP status a gRPC status maps to (Envoy's
 * Grpc::Utility::grpcToHttpStatus), since a failed gRPC call still answers HTTP 200.
 *
 *   OK 0 -> 200            INVALID_ARGUMENT 3 -> 400    FAILED_PRECONDITION 9 -> 400   OUT_OF_RANGE 11 -> 400
 *   CANCELLED 1 -> 499     DEADLINE_EXCEEDED 4 -> 504   ABORTED 10 -> 409              UNIMPLEMENTED 12 -> 501
 *   UNKNOWN 2 -> 500       NOT_FOUND 5 -> 404           UNAVAILABLE 14 -> 503          INTERNAL 13 -> 500
 *   ALREADY_EXISTS 6 -> 409  PERMISSION_DENIED 7 -> 403  RESOURCE_EXHAUSTED 8 -> 429  DATA_LOSS 15 -> 500
 *   UNAUTHENTICATED 16 -> 401; anything else -> 500
 */
const GRPC_TO_HTTP = [200, 499, 500, 400, 504, 404, 409, 403, 429, 400, 409, 400, 501, 500, 503, 500, 401];

/** The HTTP status a gRPC status code maps to. */
export function grpcCodeToHttp(code: number): number {
  return GRPC_TO_HTTP[code] ?? 500;
}

/** The HTTP status a gRPC status header value maps to; undefined when the value is not a status. */
export function grpcToHttpStatus(value: string | string[] | undefined): number | undefined {
  if (value === undefined) return undefined;
  const code = Number(Array.isArray(value) ? value[0] : value);
  return Number.isInteger(code) && code >= 0 ? grpcCodeToHttp(code) : undefined;
}

/** `retry.on` names of the gRPC conditions (Envoy's retry_on gRPC values) and their status codes. */
export const GRPC_RETRY_ON: Readonly<Record<string, number>> = {
  cancelled: 1,
  'deadline-exceeded': 4,
  'resource-exhausted': 8,
  internal: 13,
  unavailable: 14,
};

/** The grpc-status of a raw response header list (a Trailers-Only response carries it there), or -1. */
export function grpcStatusIn(raw: readonly (Buffer | string)[]): number {
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    if (name.length === 11 && name.toString('latin1').toLowerCase() === 'grpc-status') {
      const code = Number(raw[i + 1].toString('latin1'));
      return Number.isInteger(code) && code >= 0 ? code : -1;
    }
  }
  return -1;
}
