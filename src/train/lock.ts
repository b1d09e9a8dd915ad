// One training per output folder: `<out>/.micar-train.lock` holds the owner's pid, host and
// start time. A second training pointed at the same folder refuses; a lock whose process is
// gone (a killed run) is taken over with a warning. Deno only (the browser has no folder).
interface DenoLock {
  pid: number;
  hostname(): string;
  open(p: string, o: { write: boolean; createNew: boolean }): Promise<{ write(b: Uint8Array): Promise<number>; close(): void }>;
  readTextFile(p: string): Promise<string>;
  remove(p: string): Promise<void>;
  removeSync(p: string): void;
  stat(p: string): Promise<unknown>;
  mkdir(p: string, o: { recursive: boolean }): Promise<void>;
  errors: { AlreadyExists: new () => Error; NotFound: new () => Error };
}

export const LOCK_NAME = '.micar-train.lock';

interface LockInfo {
  pid: number;
  host: string;
  started: string;
}

export class OutDirLockedError extends Error {}

function deno(): DenoLock | undefined {
  return (globalThis as { Deno?: DenoLock }).Deno;
}

/** Whether `pid` runs on this host (Linux /proc; elsewhere assumed alive, so never stolen). */
async function alive(d: DenoLock, pid: number): Promise<boolean> {
  try {
    await d.stat(`/proc/${pid}`);
    return true;
  } catch (e) {
    if (e instanceof d.errors.NotFound) {
      try {
        await d.stat('/proc/self');
        return false;
      } catch {
        return true; // no /proc: cannot tell
      }
    }
    return true;
  }
}

/**
 * Takes the lock of `outDir` (creating the folder) and returns its release. Throws
 * OutDirLockedError naming the folder and the owner when another live process holds it.
 */
export async function lockOutDir(outDir: string, warn: (line: string) => void): Promise<() => void> {
  const d = deno();
  if (!d) return () => {};
  await d.mkdir(outDir, { recursive: true });
  const path = `${outDir}/${LOCK_NAME}`;
  const mine: LockInfo = { pid: d.pid, host: d.hostname(), started: new Date().toISOString() };
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const f = await d.open(path, { write: true, createNew: true });
      try {
        await f.write(new TextEncoder().encode(JSON.stringify(mine) + '\n'));
      } finally {
        f.close();
      }
      return () => {
        try {
          d.removeSync(path);
        } catch { /* already gone */ }
      };
    } catch (e) {
      if (attempt > 0) throw e;
      // A read-only or full folder, or no permission: say which folder, before any training.
      if (!(e instanceof d.errors.AlreadyExists)) throw new Error(`cannot write in the output folder ${outDir} (its lock file ${path}): ${(e as Error).message}`, { cause: e });
    }
    let owner: LockInfo | null = null;
    try {
      owner = JSON.parse(await d.readTextFile(path)) as LockInfo;
    } catch { /* unreadable or half-written: treated as stale below */ }
    const sameHost = owner?.host === mine.host;
    if (owner && (!sameHost || owner.pid === mine.pid || (await alive(d, owner.pid)))) {
      throw new OutDirLockedError(
        `${outDir} is in use by another training (pid ${owner.pid} on ${owner.host}, since ${owner.started}; lock file ${path}). ` +
          `Use another --out, or stop that run${sameHost ? '' : ` (or delete ${path} if it is gone)`}.`,
      );
    }
    warn(`warning: taking over the stale lock ${path}${owner ? ` of pid ${owner.pid} (started ${owner.started}), which no longer runs` : ' (unreadable)'}`);
    await d.remove(path).catch(() => {});
  }
  throw new Error('unreachable');
}
