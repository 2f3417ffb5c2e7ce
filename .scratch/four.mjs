import { TallyNode, loadConfig } from '../dist/src/node/index.js';
import { mkdtempSync } from 'node:fs';
const cfg = loadConfig({ TALLY_HTTP_PORT: '9913', TALLY_HTTP_HOST: '127.0.0.1', TALLY_DATA_DIR: mkdtempSync('/tmp/t4-'), TALLY_LOG_LEVEL: 'warn', DATABASE_URL: process.argv[2] ?? '' });
const n = new TallyNode(cfg);
await n.start();
console.log('up');
