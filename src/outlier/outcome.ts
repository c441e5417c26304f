/**
 * How an upstream attempt ended, for outlier detection: the forwarder classifies each attempt by its
 * status (0: no response; 502/503/504: gateway error; other 5xx; anything else a success), workers
 * batch the codes to the primary (control/ipc/messages.ts OutcomeBatch) and the detectors count them.
 * The values are the codes on the wire. A module of its own so the data plane can name outcomes without
 * loading the detector (and registering its metrics) in every worker.
 */
export const Outcome = { SUCCESS: 0, HTTP_5XX: 1, GATEWAY_ERROR: 2, LOCAL_FAILURE: 3 } as const;
export type Outcome = (typeof Outcome)[keyof typeof Outcome];
