/**
 * An exclusive lock on a data directory, held as a file with the owner's pid. PGlite has no
 * lock of its own, and two processes writing one data directory corrupt it.
 */
import { link, readFile, rm, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { DataDirInUseError } from './errors.js';

/** Locks held by this process: its own pid in a lock file is stale only if it holds none. */
const held = new Set<string>();

export interface DataDirLock {
  release(): Promise<void>;
}

export async function lockDataDir(file: string): Promise<DataDirLock> {
  const path = resolve(file);
  if (held.has(path)) throw new DataDirInUseError(path, process.pid);
  // Two tries: the second follows the removal of a lock left by a process that is gone.
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await createWithContent(path, `${process.pid}\n`);
      held.add(path);
      let released = false;
      return {
        async release() {
          if (released) return;
          released = true;
          held.delete(path);
          await rm(path, { force: true });
        },
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      // A lock file that cannot be read (removed meanwhile, half written) names no live holder.
      const holder = Number.parseInt(await readFile(path, 'utf8').catch(() => ''), 10);
      // After a crash the pid may be ours again (pid 1 in a container): stale as well.
      if (Number.isInteger(holder) && holder !== process.pid && isAlive(holder)) throw new DataDirInUseError(path, holder);
      await rm(path, { force: true });
    }
  }
  throw new DataDirInUseError(path, undefined);
}

/** Creates `path` only if it does not exist, with its content in place from the start. */
async function createWithContent(path: string, content: string): Promise<void> {
  const draft = `${path}.${process.pid}`;
  await writeFile(draft, content);
  try {
    await link(draft, path); // atomic, and fails with EEXIST when the lock is taken
  } finally {
    await rm(draft, { force: true });
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
