import { Type, type Static } from '@sinclair/typebox';
import { Obj } from './common.js';
import { AdminSchema, GatewaySchema } from './gateway.js';
import { ListenerSchema } from './listener.js';
import { RouteSchema } from './route.js';
import { ClusterSchema } from './cluster.js';
import { ExtensionSchemas } from './extensions.js';
import { ConfigStoreSchema, ManagementServerSchema } from './managed.js';

/** The whole gateway configuration: the single source of truth for types and defaults. */
export const ConfigSchema = Obj({
  gateway: GatewaySchema,
  admin: AdminSchema,
  listeners: Type.Array(ListenerSchema, { default: [] }),
  routes: Type.Array(RouteSchema, { default: [] }),
  clusters: Type.Array(ClusterSchema, { default: [] }),
  ...ExtensionSchemas,
  managementServer: Type.Optional(ManagementServerSchema),
  configStore: Type.Optional(ConfigStoreSchema),
});

export type Config = Static<typeof ConfigSchema>;
export type GatewayConfig = Config['gateway'];
export type ListenerConfig = Static<typeof ListenerSchema>;
export type RouteConfig = Static<typeof RouteSchema>;
export type ClusterConfig = Static<typeof ClusterSchema>;
export type EndpointConfig = ClusterConfig['endpoints'][number];
