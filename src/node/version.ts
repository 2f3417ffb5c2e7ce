import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** The package version, read from package.json wherever this file is run from (src or dist). */
function readVersion(): string {
  for (const candidate of ['../../package.json', '../../../package.json']) {
    try {
      const manifest = require(candidate) as { name?: string; version?: string };
      if (manifest.name === 'tally' && manifest.version !== undefined) return manifest.version;
    } catch {
      // try the next location
    }
  }
  return '0.0.0';
}

export const VERSION = readVersion();
