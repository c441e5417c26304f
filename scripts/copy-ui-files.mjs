// tsc emits only the TypeScript: the gateway UI's plain HTML, JS and CSS are copied next to the
// compiled module that serves them (src/control/admin/ui-assets.ts reads them from ./ui/).
import { cpSync } from 'node:fs';

cpSync(new URL('../src/control/admin/ui/', import.meta.url), new URL('../dist/control/admin/ui/', import.meta.url), {
  recursive: true,
});
