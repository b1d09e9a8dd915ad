#!/usr/bin/env node
// `micar` for npm installs: the command line runs on Deno (WebGPU, file system), so this hands
// the arguments to `deno run -A src/cli/main.ts` — the project's own Deno from node_modules when
// present, else `deno` on PATH.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const local = join(root, 'node_modules', '.bin', 'deno');
const deno = existsSync(local) ? local : 'deno';
// --expose-gc: the runtime collects bind groups every so often (src/graph/runtime.ts collectBindGroups).
const env = { ...process.env, DENO_V8_FLAGS: [process.env.DENO_V8_FLAGS, '--expose-gc'].filter(Boolean).join(',') };
const r = spawnSync(deno, ['run', '-A', join(root, 'src', 'cli', 'main.ts'), ...process.argv.slice(2)], { stdio: 'inherit', env });
if (r.error) {
  console.error(`micar: cannot start Deno (${r.error.message}); install it (https://deno.com) or \`npm install deno\``);
  process.exit(127);
}
process.exit(r.status ?? 1);
