/** The NATS service `tally`: the internal request/reply API, on the commands of `src/api`. */
export { NatsApi } from './service.js';
