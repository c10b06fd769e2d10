import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { Wallet } from 'ethers';
import type { Acceptance, Chain } from '../support/chain';
import { ANVIL_KEYS, deployOracle, readAcceptances, startAnvil } from '../support/chain';
import type { LogLine } from '../support/daemon-process';
import {
  REPO_ROOT,
  addressLogs,
  appendStage,
  copySamples,
  temporaryFolder,
} from '../support/daemon-process';

/**
 * Runs the PM2 commands of docs/deployment.md with the real pm2 from node_modules against
 * anvil. Every pm2 call uses the test's own PM2_HOME, so no other PM2 daemon is involved.
 */

const PM2 = path.join(REPO_ROOT, 'node_modules/.bin/pm2');
const PROCESS_FILE = path.join(REPO_ROOT, 'apps/operator/pm2.config.js');
const APP_NAME = 'operator-telemetry';
const PM2_COMMAND_TIMEOUT_MS = 60_000;
const POLL_MS = 200;

const execFileAsync = promisify(execFile);

/** The part of one `pm2 jlist` entry that the test reads. */
interface Pm2Process {
  name: string;
  pid: number;
  pm2_env: {
    status: string;
    restart_time: number;
    exit_code?: number;
    args?: string[];
    exec_mode: string;
    kill_timeout?: number;
    stop_exit_codes?: number[];
    wait_ready?: boolean;
    pm_out_log_path: string;
    pm_cwd: string;
    [variable: string]: unknown;
  };
}

describe('pm2 deployment', () => {
  const folder = temporaryFolder('pm2');
  const pm2Home = path.join(folder.path, 'pm2-home');
  const stateFile = path.join(folder.path, 'state', 'operator-telemetry-state.json');
  const signer = new Wallet(ANVIL_KEYS[1]!);
  let chain: Chain;
  let oracleAddress: string;
  let logs: string;

  /** The `KEY=VALUE` arguments of the documented start command, passed after `--`. */
  const daemonArguments = (extra: string[] = []): string[] => [
    'TELEMETRY_MODE=contract',
    `ENERGY_ORACLE_ADDRESS=${oracleAddress}`,
    `ENERGY_ORACLE_RPC_URL=${chain.rpcUrl}`,
    `ENERGY_ORACLE_SIGNER_KEY=${signer.privateKey}`,
    `ENERGY_LOG_DIR=${logs}`,
    `TELEMETRY_STATE_FILE=${stateFile}`,
    ...extra,
  ];

  /**
   * Runs pm2 with a small environment. With --update-env, PM2 copies the environment of
   * the pm2 command into the daemon's, so `env` is how a test sets a daemon variable.
   */
  const pm2 = async (args: string[], env: Record<string, string> = {}): Promise<string> => {
    const { stdout } = await execFileAsync(PM2, args, {
      cwd: folder.path,
      env: { PATH: process.env.PATH ?? '', HOME: folder.path, PM2_HOME: pm2Home, ...env },
      timeout: PM2_COMMAND_TIMEOUT_MS,
    });
    return stdout;
  };

  const listApps = async (): Promise<Pm2Process[]> => {
    const output = await pm2(['jlist']);
    // The first pm2 command of a new PM2_HOME prints a banner before the JSON.
    const json = output.slice(output.indexOf('['));
    return JSON.parse(json) as Pm2Process[];
  };

  const findApp = async (): Promise<Pm2Process | undefined> =>
    (await listApps()).find((app) => app.name === APP_NAME);

  const requireApp = async (): Promise<Pm2Process> => {
    const app = await findApp();
    assert.ok(app, `pm2 jlist lists ${APP_NAME}`);
    return app;
  };

  /** Reads the JSON log lines of one daemon pid from the out log that PM2 writes. */
  const daemonLines = async (pid: number): Promise<LogLine[]> => {
    const app = await requireApp();
    const text = fs.readFileSync(app.pm2_env.pm_out_log_path, 'utf8');
    const lines: LogLine[] = [];
    for (const line of text.split('\n')) {
      if (!line.startsWith('{')) continue;
      const parsed = JSON.parse(line) as LogLine;
      if (parsed.pid === pid) lines.push(parsed);
    }
    return lines;
  };

  const acceptances = async (): Promise<Acceptance[]> => readAcceptances(chain, oracleAddress);

  before(async () => {
    logs = copySamples(folder.path);
    chain = await startAnvil();
    oracleAddress = (await deployOracle(chain, { signers: [signer.address] })).address;
  });

  after(async () => {
    await stopPm2Daemon(pm2Home, () => pm2(['kill']));
    await chain.stop();
    folder.cleanup();
  });

  test('start command delivers every log', async () => {
    await pm2([
      'start',
      PROCESS_FILE,
      '--env',
      'production',
      '--update-env',
      '--',
      ...daemonArguments(),
    ]);

    const app = await requireApp();
    assert.equal(app.pm2_env.status, 'online');
    assert.deepEqual(app.pm2_env.args, daemonArguments());
    assert.equal(app.pm2_env.NODE_ENV, 'production');
    assert.equal(app.pm2_env.pm_cwd, REPO_ROOT);
    assert.equal(app.pm2_env.exec_mode, 'fork_mode');
    assert.equal(app.pm2_env.kill_timeout, 15000);
    assert.equal(app.pm2_env.wait_ready, true);
    assert.deepEqual(app.pm2_env.stop_exit_codes, [65, 75, 78]);

    const expected = addressLogs(logs).length;
    await waitUntil(
      async () => (await acceptances()).length >= expected,
      30_000,
      'every address log accepted',
    );
    assert.equal((await acceptances()).length, expected);

    const started = (await daemonLines(app.pid)).find(
      (line) => line.msg === 'operator-telemetry starting',
    );
    assert.equal(started?.logDir, logs, 'ENERGY_LOG_DIR came from the arguments');
    assert.equal(started?.stateFile, stateFile, 'TELEMETRY_STATE_FILE came from the arguments');
  });

  test('killed daemon restarted, no duplicates', async () => {
    const killed = await requireApp();
    process.kill(killed.pid, 'SIGKILL');

    let restarted: Pm2Process | undefined;
    await waitUntil(
      async () => {
        restarted = await findApp();
        return (
          restarted !== undefined &&
          restarted.pm2_env.status === 'online' &&
          restarted.pm2_env.restart_time > killed.pm2_env.restart_time &&
          restarted.pid > 0 &&
          restarted.pid !== killed.pid
        );
      },
      20_000,
      'PM2 to restart the killed daemon',
    );
    assert.equal(restarted?.pm2_env.restart_time, killed.pm2_env.restart_time + 1);

    const before = (await acceptances()).length;
    const [first, second] = addressLogs(logs);
    appendStage(first!.file, 7, Date.now());
    appendStage(second!.file, 9, Date.now());
    await waitUntil(
      async () => (await acceptances()).length >= before + 2,
      30_000,
      'two new revisions accepted',
    );

    const all = await acceptances();
    assert.equal(all.length, before + 2);
    assertNoDuplicates(all);
    for (const job of [first!, second!]) {
      const latest = all.filter((a) => a.user === job.agent && a.jobId === BigInt(job.jobId));
      assert.equal(
        latest.length,
        2,
        `${job.agent}/${job.jobId} accepted before and after the new stage`,
      );
    }
  });

  test('restart --update-env applies new variables', async () => {
    const previous = await requireApp();
    // TELEMETRY_POLL_INTERVAL_MS and TELEMETRY_WATCH are not among the arguments, so the new
    // environment sets them. ENERGY_LOG_DIR is, and the argument wins over the environment.
    await pm2(['restart', APP_NAME, '--update-env'], {
      TELEMETRY_POLL_INTERVAL_MS: '300',
      TELEMETRY_WATCH: 'false',
      ENERGY_LOG_DIR: path.join(folder.path, 'not-the-log-dir'),
    });

    const app = await requireApp();
    assert.notEqual(app.pid, previous.pid);
    assert.equal(app.pm2_env.status, 'online');
    assert.deepEqual(app.pm2_env.args, daemonArguments(), 'pm2 restart keeps the arguments');
    assert.equal(app.pm2_env.TELEMETRY_POLL_INTERVAL_MS, '300');

    const started = (await daemonLines(app.pid)).find(
      (line) => line.msg === 'operator-telemetry starting',
    );
    assert.equal(started?.logDir, logs, 'the ENERGY_LOG_DIR argument wins over the environment');

    // Without file watching, only the poll interval brings a cycle. A stage appended right
    // after a cycle is delivered within 4 s only if the interval is 300 ms, not the 10 s default.
    const [, , third, fourth] = addressLogs(logs);
    const before = (await acceptances()).length;
    appendStage(third!.file, 5, Date.now());
    await waitUntil(
      async () => (await acceptances()).length >= before + 1,
      15_000,
      'first stage accepted',
    );

    const appendedAt = Date.now();
    appendStage(fourth!.file, 6, appendedAt);
    await waitUntil(
      async () => (await acceptances()).length >= before + 2,
      15_000,
      'second stage accepted',
    );
    const elapsedMs = Date.now() - appendedAt;
    assert.ok(
      elapsedMs < 4000,
      `delivered ${elapsedMs} ms after the change; a 300 ms poll needs far less than 4 s`,
    );
    assertNoDuplicates(await acceptances());
  });

  test('stop is clean, delete removes it', async () => {
    const running = await requireApp();
    await pm2(['stop', APP_NAME]);

    const stopped = await requireApp();
    assert.equal(stopped.pm2_env.status, 'stopped');
    const lines = await daemonLines(running.pid);
    assert.ok(
      lines.some((line) => line.msg === 'stopped'),
      'the daemon logged its clean stop',
    );
    assert.ok(
      !lines.some((line) => line.msg.startsWith('stop took too long')),
      'the daemon stopped before its own 8 s deadline',
    );

    await pm2(['delete', APP_NAME]);
    assert.equal(await findApp(), undefined);
  });

  test('configuration error exits 78, no restart', async () => {
    await pm2([
      'start',
      PROCESS_FILE,
      '--env',
      'production',
      '--update-env',
      '--',
      ...daemonArguments(['TELEMETRY_ROLE=300']),
    ]);
    // Long enough for several restarts with the 100 ms first backoff, had PM2 restarted it.
    await new Promise((resolve) => setTimeout(resolve, 3000));

    const app = await requireApp();
    assert.equal(app.pm2_env.exit_code, 78);
    assert.equal(app.pm2_env.restart_time, 0);
    assert.equal(app.pid, 0, 'no daemon process is running');
    // NOTE: PM2 7.0.4 sets the status to "waiting restart" whenever exp_backoff_restart_delay is
    // set, even for an exit code in stop_exit_codes that it then does not restart.
    assert.ok(
      ['stopped', 'errored', 'waiting restart'].includes(app.pm2_env.status),
      `status ${app.pm2_env.status}`,
    );

    const text = fs.readFileSync(app.pm2_env.pm_out_log_path, 'utf8');
    assert.match(text, /TELEMETRY_ROLE is \\"300\\": expected a whole number from 0 to 255/);
    await pm2(['delete', APP_NAME]);
  });
});

/** Fails when two accepted attestations share user, jobId and degeneracy (one revision). */
function assertNoDuplicates(acceptances: Acceptance[]): void {
  const seen = new Set<string>();
  for (const acceptance of acceptances) {
    const key = `${acceptance.user}/${acceptance.jobId}/${acceptance.att.degeneracy}`;
    assert.ok(!seen.has(key), `revision ${key} accepted twice`);
    seen.add(key);
  }
}

async function waitUntil(
  condition: () => Promise<boolean>,
  timeoutMs: number,
  description: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${description}`);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

/**
 * Runs `pm2 kill`, then kills the PM2 daemon by the pid in PM2_HOME/pm2.pid if it is still
 * there, so that no PM2 daemon outlives the test even when `pm2 kill` fails.
 */
async function stopPm2Daemon(pm2Home: string, kill: () => Promise<unknown>): Promise<void> {
  const pidFile = path.join(pm2Home, 'pm2.pid');
  const pid = fs.existsSync(pidFile) ? Number(fs.readFileSync(pidFile, 'utf8')) : undefined;
  try {
    await kill();
  } catch (error) {
    process.stderr.write(`pm2 kill failed: ${String(error)}\n`);
  }
  if (pid === undefined || !Number.isInteger(pid)) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // Already gone, as it should be after pm2 kill.
  }
}
