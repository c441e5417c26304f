import type { LbConfig } from '../types.js';
import type { PolicyFactory } from './policy.js';
import { roundRobin } from './round-robin.js';
import { leastRequest } from './least-request.js';
import { random } from './random.js';
import { ringHash } from './ring-hash.js';
import { maglev } from './maglev.js';

/** Every policy by its config name. */
export const POLICIES: Record<LbConfig['policy'], PolicyFactory> = {
  round_robin: roundRobin,
  least_request: leastRequest,
  random,
  ring_hash: ringHash,
  maglev,
};
