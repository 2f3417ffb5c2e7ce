/**
 * One Tally process: its configuration, logging and lifecycle. This folder is the only one
 * that wires the others together (see node.ts); what it offers outside is the node itself.
 */
export { CONFIG_DEFAULTS, loadConfig, loadNatsAuth } from './config.js';
export { createLogger } from './logger.js';
export { TallyNode } from './node.js';
export { UsageError } from './usageError.js';
