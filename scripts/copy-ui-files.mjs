// tsc emits only the TypeScript: the UIs' plain HTML, JS and CSS are copied next to the compiled
// modules that serve them (src/control/admin/ui-assets.ts reads the gateway UI's from ./ui/, and
// src/hub/server.ts the hub UI's from its own ./ui/).
import { cpSync } from 'node:fs';

for (const dir of ['control/admin/ui/', 'hub/ui/'])
  cpSync(new URL(`../src/${dir}`, import.meta.url), new URL(`../dist/${dir}`, import.meta.url), { recursive: true });
