/**
 * The architecture of docs/architecture.md, checked on every `npm test` (`npm run check:architecture`).
 * Each rule names the layer it protects; a new import that breaks one fails the run with
 * the rule's name and the offending edge.
 */
const FOLDERS = 'shards|persistence|api|credentials|accounts|http|nats|node';

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-cycles',
      severity: 'error',
      comment:
        'No import cycle in the product: a cycle makes load order and ownership of a concept ambiguous. Types may refer to each other (a Shard holds Actors, an Actor knows its Shard): a cycle counts when every edge in it exists at run time.',
      from: { path: '^(src|cluster|console)/' },
      to: { circular: true, viaOnly: { dependencyTypesNot: ['type-only'] } },
    },
    {
      name: 'front-door',
      severity: 'error',
      comment: 'A folder is imported through its index.ts only; what it does not export there is private to it.',
      from: { path: `^src/(${FOLDERS})/` },
      to: { path: `^src/(${FOLDERS})/`, pathNot: ['^src/$1/', '^src/[^/]+/index\\.ts$'] },
    },
    {
      name: 'cluster-front-door',
      severity: 'error',
      comment: 'The process reaches the cluster protocol through src/node/cluster/index.ts only.',
      from: { path: '^src/node/[^/]+$' },
      to: { path: '^src/node/cluster/', pathNot: '^src/node/cluster/index\\.ts$' },
    },
    {
      name: 'cluster-protocol-is-below-the-process',
      severity: 'error',
      comment: 'The cluster protocol takes what it needs as arguments; it never reaches back into the process that runs it.',
      from: { path: '^src/node/cluster/' },
      to: { path: '^src/node/[^/]+$' },
    },
    {
      name: 'domain-is-pure',
      severity: 'error',
      comment: 'src/shards is the domain and the actor runtime: no transport, no storage, no process, no logging.',
      from: { path: '^src/shards/' },
      to: { path: '^src/(persistence|api|credentials|accounts|http|nats|node)/' },
    },
    {
      name: 'domain-uses-no-io-package',
      severity: 'error',
      comment: 'The domain imports only the hash function from npm; I/O packages belong to the edges.',
      from: { path: '^src/shards/' },
      to: { dependencyTypes: ['npm', 'npm-dev', 'npm-optional', 'npm-peer', 'npm-no-pkg', 'npm-unknown'], pathNot: 'node_modules/xxhash-wasm/' },
    },
    {
      name: 'storage-below-transports',
      severity: 'error',
      comment: 'src/persistence stores the domain; it knows no transport, no credentials and no process.',
      from: { path: '^src/persistence/' },
      to: { path: '^src/(api|credentials|accounts|http|nats|node)/' },
    },
    {
      name: 'shared-api-knows-no-transport',
      severity: 'error',
      comment: 'src/api is what HTTP and NATS share: it imports neither, and no storage or wiring.',
      from: { path: '^src/api/' },
      to: { path: '^src/(http|nats|node|persistence|accounts|credentials)/' },
    },
    {
      name: 'credentials-and-accounts-know-no-transport',
      severity: 'error',
      comment: 'Credentials and accounts are used by transports; they import none, and no storage driver or wiring.',
      from: { path: '^src/(credentials|accounts)/' },
      to: { path: '^src/(http|nats|node|persistence)/' },
    },
    {
      name: 'transports-are-independent',
      severity: 'error',
      comment: 'HTTP and NATS both build on src/api and never import each other.',
      from: { path: '^src/(http|nats)/' },
      to: { path: '^src/(http|nats)/', pathNot: '^src/$1/' },
    },
    {
      name: 'only-the-node-wires',
      severity: 'error',
      comment: 'Only src/node assembles the folders into a process: no transport reaches storage or the process directly.',
      from: { path: '^src/(http|nats)/' },
      to: { path: '^src/(node|persistence)/' },
    },
    {
      name: 'product-never-imports-tests',
      severity: 'error',
      comment: 'Test harnesses serve the tests (and the benchmarks, which seed with them); the product never depends on them.',
      from: { path: '^(src|cluster|console)/' },
      to: { path: '^test/' },
    },
    {
      name: 'cli-is-a-leaf',
      severity: 'error',
      comment: 'Only the `tally` command (src/node/main.ts) loads the cluster CLI, through its index; nothing else in src/ depends on it.',
      from: { path: '^src/', pathNot: '^src/node/main\\.ts$' },
      to: { path: '^cluster/' },
    },
    {
      name: 'cli-entry',
      severity: 'error',
      comment: 'src/node/main.ts reaches the cluster CLI through cluster/index.ts only.',
      from: { path: '^src/node/main\\.ts$' },
      to: { path: '^cluster/', pathNot: '^cluster/index\\.ts$' },
    },
    {
      name: 'cli-on-readers',
      severity: 'error',
      comment: 'The operator CLI reads the cluster through src/node/cluster/index.ts (and the domain’s front door), never a private module.',
      from: { path: '^cluster/' },
      to: { path: '^src/', pathNot: ['^src/node/cluster/index\\.ts$', '^src/shards/index\\.ts$', '^src/node/index\\.ts$'] },
    },
    {
      name: 'bench-on-front-doors',
      severity: 'error',
      comment: 'The benchmarks measure the product through its front doors (and seed with the test harness), never a private module.',
      from: { path: '^bench/' },
      to: { path: '^src/', pathNot: '^src/([^/]+|node/cluster)/index\\.ts$' },
    },
    {
      name: 'client-stands-alone',
      severity: 'error',
      comment: '@tally/client is published on its own: it speaks the wire protocol and imports nothing of the service, its tests or its tools.',
      from: { path: '^clients/typescript/src/' },
      to: { path: '^(src|test|bench|cluster|console)/' },
    },
    {
      name: 'console-shares-types-only',
      severity: 'error',
      comment: 'The browser console shares the cluster view’s type with the server, nothing that runs on Node.',
      from: { path: '^console/' },
      to: { path: '^src/', dependencyTypesNot: ['type-only'] },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '(^|/)(dist|node_modules)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default', 'types'] },
    reporterOptions: { text: { highlightFocused: true } },
  },
};
