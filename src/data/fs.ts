// File access for the dataset loaders: the local file system in Deno (or Node), or an in-memory
// map in a browser (e.g. files the user dropped onto the page), behind one small interface.

export interface DataFiles {
  readFile(path: string): Promise<Uint8Array>;
  /** Names (not paths) of the entries directly inside `dir`, sorted. */
  list(dir: string): Promise<string[]>;
  exists(path: string): Promise<boolean>;
  writeFile(path: string, data: Uint8Array): Promise<void>;
  mkdirp(path: string): Promise<void>;
}

export function joinPath(...parts: string[]): string {
  const joined = parts.filter((p) => p !== '').join('/');
  return joined.replace(/\/{2,}/g, '/');
}

interface DenoFs {
  readFile(p: string): Promise<Uint8Array>;
  writeFile(p: string, d: Uint8Array): Promise<void>;
  readDir(p: string): AsyncIterable<{ name: string }>;
  stat(p: string): Promise<unknown>;
  mkdir(p: string, o: { recursive: boolean }): Promise<void>;
}

/** The local file system (Deno API where present, else node:fs/promises). */
export async function localFiles(): Promise<DataFiles> {
  const deno = (globalThis as { Deno?: DenoFs }).Deno;
  if (deno) {
    return {
      readFile: (p) => deno.readFile(p),
      writeFile: (p, d) => deno.writeFile(p, d),
      async list(dir) {
        const names: string[] = [];
        for await (const e of deno.readDir(dir)) names.push(e.name);
        return names.sort();
      },
      async exists(p) {
        try {
          await deno.stat(p);
          return true;
        } catch {
          return false;
        }
      },
      mkdirp: (p) => deno.mkdir(p, { recursive: true }),
    };
  }
  const spec = 'node:fs/promises';
  const fs = (await import(/* @vite-ignore */ spec)) as {
    readFile(p: string): Promise<Uint8Array>;
    writeFile(p: string, d: Uint8Array): Promise<void>;
    readdir(p: string): Promise<string[]>;
    stat(p: string): Promise<unknown>;
    mkdir(p: string, o: { recursive: boolean }): Promise<unknown>;
  };
  return {
    readFile: async (p) => new Uint8Array(await fs.readFile(p)),
    writeFile: (p, d) => fs.writeFile(p, d),
    list: async (dir) => (await fs.readdir(dir)).sort(),
    async exists(p) {
      try {
        await fs.stat(p);
        return true;
      } catch {
        return false;
      }
    },
    mkdirp: async (p) => {
      await fs.mkdir(p, { recursive: true });
    },
  };
}

/** Files held in memory, keyed by path ('dir/name'); directories are implied by the paths. */
export function memoryFiles(files: Map<string, Uint8Array> = new Map()): DataFiles & { files: Map<string, Uint8Array> } {
  const norm = (p: string) => joinPath(p).replace(/^\.\//, '').replace(/\/$/, '');
  return {
    files,
    async readFile(p) {
      const d = files.get(norm(p));
      if (!d) throw new Error(`memoryFiles: no file ${p}`);
      return d;
    },
    async writeFile(p, d) {
      files.set(norm(p), d);
    },
    async list(dir) {
      const prefix = norm(dir) === '' ? '' : norm(dir) + '/';
      const names = new Set<string>();
      for (const k of files.keys()) if (k.startsWith(prefix)) names.add(k.slice(prefix.length).split('/')[0]);
      return [...names].sort();
    },
    async exists(p) {
      const n = norm(p);
      if (files.has(n)) return true;
      for (const k of files.keys()) if (k.startsWith(n + '/')) return true;
      return false;
    },
    async mkdirp() {},
  };
}
