// The console page's bundle: one IIFE script that the node inlines into /console, so the page
// needs nothing from a CDN or another route. `npm run build` runs this after tsc.
import { defineConfig } from 'vite';

export default defineConfig({
  root: import.meta.dirname,
  logLevel: 'warn',
  build: {
    outDir: '../dist/console',
    emptyOutDir: true,
    target: 'es2022',
    lib: { entry: 'main.ts', name: 'TallyConsole', formats: ['iife'], fileName: () => 'console.js' },
  },
});
