// Resolve the UI tests' npm packages from the cache that run.sh fills
// (outside the source tree), or from a local node_modules.
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

export function cacheDir() {
  return path.join(process.env.OCG_CACHE_DIR || path.join(os.homedir(), '.cache', 'ocg'), 'ui-node_modules');
}

/** `require(name)` from the first node_modules that has it. */
export function requireDep(name) {
  const dirs = [
    process.env.OCG_UI_NODE_MODULES,
    path.join(cacheDir(), 'node_modules'),
    path.join(here, 'node_modules'),
  ].filter(Boolean);
  for (const dir of dirs) {
    if (fs.existsSync(path.join(dir, name, 'package.json'))) {
      return createRequire(path.join(dir, '..', 'resolve-from-here.js'))(name);
    }
  }
  throw new Error(`npm package ${name} not found in ${dirs.join(', ')}: run tests/ui/run.sh, which installs it`);
}
