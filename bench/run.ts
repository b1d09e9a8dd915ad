// `npm run bench -- <name>`: runs bench/<name>.ts (each benchmark prints a JSON last line).
declare const Deno: { args: string[]; exit(code: number): never; readDir(p: URL): AsyncIterable<{ name: string }> };

const name = Deno.args[0];
if (!name || !/^[\w-]+$/.test(name)) {
  const names: string[] = [];
  for await (const e of Deno.readDir(new URL('.', import.meta.url))) {
    if (e.name.endsWith('.ts') && !['run.ts', 'harness.ts'].includes(e.name)) names.push(e.name.slice(0, -3));
  }
  console.error(`usage: npm run bench -- <name>   (one of: ${names.sort().join(', ')})`);
  Deno.exit(2);
}
const mod = await import(new URL(`./${name}.ts`, import.meta.url).href);
if (typeof mod.main === 'function') await mod.main(Deno.args.slice(1));
// Exit explicitly: the GPU device and tfjs keep the event loop alive.
Deno.exit(0);
