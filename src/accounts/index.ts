/** Registration and login: the written-through account operations that come before any session exists. */
export { type AccountStore, Accounts, LOGIN_FAILURES, type Login, type LoginResult, type Registration } from './accounts.js';
