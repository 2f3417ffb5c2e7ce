/** Registration and login: the written-through account operations that come before any session exists. */
export { Accounts } from './accounts.js';
