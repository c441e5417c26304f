/**
 * Request/reply between a worker and the primary. Over node:cluster IPC in multi-worker mode and a
 * direct call in single-process mode, so modules using it (token leasing) need not know which.
 */
export interface RpcChannel {
  request<T = unknown>(topic: string, payload: unknown): Promise<T>;
}

/** Primary side: one handler per topic. `worker` identifies the caller (0 in single-process mode). */
export interface RpcServer {
  // biome-ignore lint/suspicious/noExplicitAny: each handler declares its topic's payload type; the wire carries JSON
  handle(topic: string, fn: (payload: any, worker: number) => unknown | Promise<unknown>): void;
}

/** An in-process channel/server pair (single-process mode and unit tests). */
export function createLocalRpc(): { channel: RpcChannel; server: RpcServer } {
  // biome-ignore lint/suspicious/noExplicitAny: as RpcServer.handle
  const handlers = new Map<string, (payload: any, worker: number) => unknown | Promise<unknown>>();
  return {
    server: { handle: (topic, fn) => void handlers.set(topic, fn) },
    channel: {
      async request<T>(topic: string, payload: unknown): Promise<T> {
        const fn = handlers.get(topic);
        if (!fn) throw new Error(`no rpc handler for ${topic}`);
        return (await fn(payload, 0)) as T;
      },
    },
  };
}
