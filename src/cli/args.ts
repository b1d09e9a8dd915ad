// Minimal `--key value` / `--flag` parsing for the CLI verbs.
export interface Args {
  _: string[];
  [key: string]: string | boolean | string[];
}

export function parseArgs(argv: string[]): Args {
  const out: Args = { _: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      if (eq > 0) out[a.slice(2, eq)] = a.slice(eq + 1);
      else if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) out[a.slice(2)] = argv[++i];
      else out[a.slice(2)] = true;
    } else out._.push(a);
  }
  return out;
}

export function str(a: Args, key: string, def?: string): string {
  const v = a[key];
  if (typeof v === 'string') return v;
  if (def !== undefined) return def;
  throw new Error(`missing --${key}`);
}

export function num(a: Args, key: string, def?: number): number {
  const v = a[key];
  if (v === undefined || typeof v === 'boolean') {
    if (def !== undefined) return def;
    throw new Error(`missing --${key}`);
  }
  const n = Number(v);
  if (!Number.isFinite(n)) throw new Error(`--${key} must be a number, got ${JSON.stringify(v)}`);
  return n;
}
