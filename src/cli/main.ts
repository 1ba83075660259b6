#!/usr/bin/env node
/** The `svid-broker` executable: runs the command line (cli.ts) and exits with its code. */
import 'reflect-metadata';
import { main, report } from './cli.js';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.exitCode = report(err);
  },
);
