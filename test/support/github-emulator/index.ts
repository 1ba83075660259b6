export { GithubEmulator, startGithubEmulator, type Installation, type IssuedToken } from './emulator.js';
