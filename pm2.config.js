'use strict';

const path = require('node:path');

/**
 * PM2 process file for the operator-telemetry daemon.
 *
 *   pm2 start pm2.config.js --env production --update-env -- TELEMETRY_MODE=contract ...
 *   pm2 restart operator-telemetry --update-env
 *
 * Paths resolve from this file's folder, so the commands work from any working directory.
 * apps/operator/pm2.config.js re-exports this file.
 */

const REPOSITORY_ROOT = __dirname;

/**
 * Returns the arguments after `--` on the command line of the pm2 process that loads this
 * file, or undefined when there is no `--`.
 *
 * PM2 7.0.4 passes arguments after `--` to the script only for `pm2 start <script>`; for a
 * process file it drops them. PM2 loads a process file with `require` inside the pm2 command
 * itself, so this file reads them from that command's argv. Without `--` the result is
 * undefined and PM2 keeps the arguments stored at the first start.
 */
function argumentsAfterDoubleDash(argv) {
  const marker = argv.indexOf('--');
  return marker === -1 ? undefined : argv.slice(marker + 1);
}

const scriptArguments = argumentsAfterDoubleDash(process.argv);

const app = {
  name: 'operator-telemetry',
  script: path.join(REPOSITORY_ROOT, 'apps/operator/dist/telemetry.js'),
  // The daemon reads `.env` and resolves relative paths (logs/energy, storage/...) from here.
  cwd: REPOSITORY_ROOT,

  // One process only: a second daemon on the same state file exits with code 75.
  exec_mode: 'fork',
  instances: 1,

  autorestart: true,
  // The first restart comes after 100 ms, and each later wait is 1.5 times the one before,
  // up to PM2's cap of 15 s. After 30 s of uptime the wait starts again from 100 ms.
  exp_backoff_restart_delay: 100,
  // Exit codes that a restart cannot fix: 65 untrusted state file, 75 state file owned by
  // another daemon, 78 invalid configuration. PM2 does not restart after them, although
  // PM2 7.0.4 lists the process as "waiting restart" because a restart delay is set.
  stop_exit_codes: [65, 75, 78],

  // The daemon stops within 8 s of SIGINT or SIGTERM. PM2 sends SIGINT and waits this long
  // before SIGKILL; its default of 1.6 s would cut the stop short.
  kill_timeout: 15000,
  // `pm2 start` and `pm2 restart` wait for the daemon's process.send('ready'), which it sends
  // once connected to its target. While the target is unreachable the daemon keeps retrying
  // and PM2 marks it online after listen_timeout anyway.
  wait_ready: true,
  listen_timeout: 30000,

  // PM2's in-process agent (pmx) listens on the IPC channel and, in PM2 7.0.4, lets go of it
  // only when the process has exactly three handles open. The daemon writes its log with
  // fs.writeSync and so has fewer, which kept it alive after it had finished: a
  // configuration error never reached PM2 as exit code 78. The daemon needs no pmx metrics.
  pmx: false,

  // The daemon logs JSON lines with their own `time` field.
  time: false,

  env: {
    NODE_ENV: 'development',
  },
  env_production: {
    NODE_ENV: 'production',
  },
};

if (scriptArguments !== undefined) app.args = scriptArguments;

module.exports = { apps: [app] };
