/**
 * How an upstream attempt ended, for outlier detection: the forwarder classifies each attempt by its
 * status (0: no response; 502/503/504: gateway error; other 5xx; anything else a success), workers
 * batch the codes to the primary (control/ipc/messages.ts OutcomeBatch) and the detectors count them.
 * The values are the codes on the wire. A module of its own so the data plane can name outcomes without
 * loading the detector (and registering its metrics) in every worker.
 */
export const Outcome = { SUCCESS: 0, HTTP_5XX: 1, GATEWAY_ERROR: 2, LOCAL_FAILURE: 3 } as const;
export type Outcome = (typeof Outcome)[keyof typeof Outcome];

/**
 * An attempt's outcome by its verdict status: 0 (no response) a local-origin failure, 502/503/504 a
 * gateway error, any other 5xx an HTTP 5xx, anything else a success. For a gRPC response the verdict
 * is its grpc-status mapped to HTTP (Envoy's rule: a failed call answers HTTP 200 with UNAVAILABLE in
 * its trailers).
 */
export function outcomeOf(verdict: number): Outcome {
  if (verdict === 0) return Outcome.LOCAL_FAILURE;
  if (verdict === 502 || verdict === 503 || verdict === 504) return Outcome.GATEWAY_ERROR;
  return verdict >= 500 ? Outcome.HTTP_5XX : Outcome.SUCCESS;
}
