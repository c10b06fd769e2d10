#!/usr/bin/env node
import pino from 'pino';
import type { Logger } from 'pino';
import { HELP, packageVersion, parseCli } from './cli';
import type { CliOptions } from './cli';
import { formatChecks, runChecks } from './check';
import type { Config } from './config';
import { mergeSettings, parseConfig, readDotenv } from './config';
import type { Daemon } from './daemon';
import { createDaemon, createSubmitter } from './daemon';
import type { HealthServer } from './health-server';
import {
  createReadinessCheck,
  healthStatus,
  stallThresholdMs,
  startHealthServer,
} from './health-server';
import { ConfigError, StateError, StateLockedError, describeError } from './errors';
import { createLogger } from './logger';
import { LogScanner } from './scanner';
import { TelemetryService } from './service';
import { describeSignerSource, loadSigner } from './signer';
import { StateStore } from './state';
import { buildStatus, formatStatus, traceJob } from './status';

/**
 * Entry point. Exit codes:
 * - 0 after a clean stop;
 * - 1 on a crash, or when `--once` or `check` found a failure;
 * - 65 when the state file cannot be trusted;
 * - 75 when another daemon owns the state file;
 * - 78 for invalid configuration.
 * Supervisors should not restart on 65, 75 or 78.
 */

export const EXIT_FAILURE = 1;
export const EXIT_STATE = 65;
export const EXIT_LOCKED = 75;
export const EXIT_CONFIG = 78;

/** Time a stop may take. Supervisors are set up to wait longer (10 s or more). */
const STOP_DEADLINE_MS = 8000;

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const cli = parseCli(args);

  if (cli.command === 'help') {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  if (cli.command === 'version') {
    process.stdout.write(`operator-telemetry ${packageVersion()}\n`);
    return 0;
  }
  if (cli.unknown.length > 0) {
    process.stderr.write(
      `unknown arguments: ${cli.unknown.join(' ')}\nrun with --help for usage\n`,
    );
    return EXIT_CONFIG;
  }
  if (cli.command === 'status') return status(args, cli);

  let config: Config;
  let unknown: string[] = [];
  try {
    const settings = mergeSettings(args, process.env, readDotenv(process.cwd()));
    unknown = settings.unknown;
    config = parseConfig(settings.raw);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    // A typo in a variable name is often the cause of a missing variable, so report both.
    const typos = unknown.map((name) => `${name} is not a variable this daemon reads (a typo?)`);
    if (cli.command === 'check') {
      const lines = [
        ...error.problems.map((problem) => `FAIL  configuration      ${problem}`),
        ...typos.map((typo) => `WARN  configuration      ${typo}`),
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    } else {
      const hint = typos.length > 0 ? `\nalso: ${typos.join('; ')}` : '';
      createLogger('info').fatal(
        { problems: error.problems, unknownVariables: unknown },
        `${error.message}${hint}\nfix the variables above and start again`,
      );
    }
    return EXIT_CONFIG;
  }

  // Dry-run output is the attestations on stdout, so its log lines go to stderr.
  const logger = createLogger(
    config.logLevel,
    cli.dryRun ? pino.destination({ dest: 2, sync: true }) : undefined,
  );
  for (const name of unknown) {
    logger.warn(
      { variable: name },
      `${name} is not a variable this daemon reads (a typo?); it is ignored`,
    );
  }

  try {
    if (cli.command === 'check') return await check(config, unknown);
    if (cli.dryRun) return await dryRun(config, logger);
    return await runDaemon(config, logger, cli.once);
  } catch (error) {
    return exitCodeFor(error, config, logger);
  }
}

function exitCodeFor(error: unknown, config: Config, logger: Logger): number {
  if (error instanceof ConfigError) {
    logger.fatal({ problems: error.problems }, error.message);
    return EXIT_CONFIG;
  }
  if (error instanceof StateLockedError) {
    logger.fatal({ file: config.stateFile }, error.message);
    return EXIT_LOCKED;
  }
  if (error instanceof StateError) {
    logger.fatal({ file: config.stateFile }, error.message);
    return EXIT_STATE;
  }
  throw error;
}

async function status(args: readonly string[], cli: CliOptions): Promise<number> {
  const { raw } = mergeSettings(args, process.env, readDotenv(process.cwd()));
  const stateFile = raw.TELEMETRY_STATE_FILE ?? 'storage/operator-telemetry-state.json';

  try {
    if (cli.agent !== undefined) {
      if (cli.jobId === undefined) {
        process.stderr.write('status needs both an agent address and a job id to trace a job\n');
        return EXIT_CONFIG;
      }
      const trace = traceJob(stateFile, cli.agent, cli.jobId);
      if (typeof trace === 'string') {
        process.stderr.write(`${trace}\n`);
        return EXIT_CONFIG;
      }
      const text = cli.json
        ? JSON.stringify(trace, null, 2)
        : trace.length > 0
          ? trace.join('\n')
          : 'no record of this job in the state file';
      process.stdout.write(`${text}\n`);
      return 0;
    }

    const report = await buildStatus({
      stateFile,
      logDir: raw.ENERGY_LOG_DIR ?? 'logs/energy',
      maxFileBytes: Number(raw.TELEMETRY_MAX_FILE_BYTES ?? 1048576),
    });
    process.stdout.write(`${cli.json ? JSON.stringify(report, null, 2) : formatStatus(report)}\n`);
    return 0;
  } catch (error) {
    process.stderr.write(`${describeError(error)}\n`);
    return error instanceof StateError ? EXIT_STATE : EXIT_FAILURE;
  }
}

async function check(config: Config, unknown: string[]): Promise<number> {
  const wallet = await loadSigner(config.signer);
  const results = await runChecks(config, wallet, unknown);
  process.stdout.write(`${formatChecks(results)}\n`);
  return results.every((result) => result.ok) ? 0 : EXIT_FAILURE;
}

async function dryRun(config: Config, logger: Logger): Promise<number> {
  const wallet = await loadSigner(config.signer);
  const state = StateStore.readOnly(config.stateFile, logger);
  const { submitter, nonces } = createSubmitter(config, wallet, state);
  const service = new TelemetryService({
    config,
    logger,
    state,
    scanner: new LogScanner(config.logDir, {
      maxFileBytes: config.maxFileBytes,
      fullScanEvery: 1,
      shard: config.shard,
    }),
    submitter,
    nonces: nonces(state),
    wallet,
  });
  try {
    const count = await service.dryRun((line) => process.stdout.write(`${JSON.stringify(line)}\n`));
    logger.info(
      { count },
      'dry run: attestations signed and printed; nothing was sent and no state changed',
    );
    return 0;
  } finally {
    await submitter.close();
  }
}

async function runDaemon(config: Config, logger: Logger, once: boolean): Promise<number> {
  const wallet = await loadSigner(config.signer);
  const daemon = await createDaemon(config, wallet, logger);
  const { service } = daemon;

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signals += 1;
    if (signals > 1) {
      logger.warn(
        { signal },
        'second stop signal: exiting at once; the next start reconciles what was in flight',
      );
      process.exit(0);
    }
    logger.info({ signal }, 'stopping: no new submission starts; state is saved');
    service.stop();
    setTimeout(() => {
      logger.warn('stop took too long; exiting; the next start reconciles what was in flight');
      process.exit(0);
    }, STOP_DEADLINE_MS).unref();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // A closed terminal or a reload request must not stop a daemon without a word.
  process.on('SIGHUP', () => {
    logger.info(
      'SIGHUP ignored: the daemon keeps running; restart it to load changed configuration',
    );
  });

  logger.info(
    {
      mode: config.mode,
      signer: wallet.address,
      keySource: describeSignerSource(config.signer),
      oracle: config.oracleAddress,
      logDir: config.logDir,
      stateFile: config.stateFile,
      pollIntervalMs: config.pollIntervalMs,
    },
    'operator-telemetry starting',
  );

  let failed = 0;
  let listener: HealthServer | undefined;
  try {
    listener = await startListener(config, daemon, logger);
    const target = await service.connect();
    if (target !== undefined) {
      logger.info(
        {
          mode: config.mode,
          target: target.target,
          chainId: target.chainId.toString(),
          signer: wallet.address,
        },
        'connected',
      );
      process.send?.('ready');
      const last = await service.run({ once });
      failed = last?.failed ?? 0;
      if (once && last !== undefined) {
        logger.info(
          { accepted: last.accepted, failed: last.failed, stillDue: last.remaining },
          last.remaining > 0
            ? 'one cycle done; more revisions are due and go out in the next run'
            : 'one cycle done; nothing else is due',
        );
      }
    }
  } finally {
    await listener?.close();
    await daemon.close();
    logger.info('stopped');
  }
  return once && failed > 0 ? EXIT_FAILURE : 0;
}

/**
 * Starts /healthz, /readyz and /metrics when TELEMETRY_METRICS_PORT is set. It starts before
 * the first connection, so /readyz reports an unreachable target while the daemon retries.
 */
async function startListener(
  config: Config,
  daemon: Daemon,
  logger: Logger,
): Promise<HealthServer | undefined> {
  if (config.metricsPort === undefined || daemon.metrics === undefined) return undefined;

  const startedAtMs = Date.now();
  const stallAfterMs = stallThresholdMs(config);
  return startHealthServer({
    host: config.metricsHost,
    port: config.metricsPort,
    logger,
    metrics: daemon.metrics,
    health: () =>
      healthStatus(
        daemon.service.stats,
        Date.now(),
        config.pollIntervalMs,
        startedAtMs,
        stallAfterMs,
      ),
    ready: createReadinessCheck({
      submitter: daemon.submitter,
      timeoutMs: config.requestTimeoutMs,
    }),
  });
}

main().then(
  (code) => {
    process.exitCode = code;
    // A supervisor's IPC channel (PM2) would otherwise keep the process alive after main ends.
    if (process.connected) process.disconnect();
  },
  (error: unknown) => {
    process.stderr.write(
      `operator-telemetry crashed: ${describeError(error)}\n${error instanceof Error ? (error.stack ?? '') : ''}\n`,
    );
    process.exitCode = EXIT_FAILURE;
  },
);
