#!/usr/bin/env node
import type { Logger } from 'pino';
import type { Config } from './config';
import { loadConfig } from './config';
import { createDaemon } from './daemon';
import { ConfigError, StateError, StateLockedError, describeError } from './errors';
import { createLogger } from './logger';
import { describeSignerSource, loadSigner } from './signer';

/**
 * Entry point. Exit codes: 0 after a clean stop, 1 on an unexpected crash, 65 when the
 * state file cannot be trusted, 75 when another daemon owns the state file, 78 for
 * invalid configuration (supervisors should not restart on 65 or 78).
 */

export const EXIT_CONFIG = 78;
export const EXIT_STATE = 65;
export const EXIT_LOCKED = 75;

/** A stop must finish within this time; supervisors are told to wait longer (10 s or more). */
const STOP_DEADLINE_MS = 8000;

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const once = args.includes('--once');

  let config: Config;
  let unknown: string[];
  try {
    ({ config, unknown } = loadConfig(args));
  } catch (error) {
    if (error instanceof ConfigError) {
      createLogger('info').fatal(
        { problems: error.problems },
        `${error.message}\nfix the variables above and start again`,
      );
      return EXIT_CONFIG;
    }
    throw error;
  }

  const logger = createLogger(config.logLevel);
  for (const name of unknown) {
    logger.warn(
      { variable: name },
      `${name} is not a variable this daemon reads (a typo?); it is ignored`,
    );
  }

  try {
    return await runDaemon(config, logger, once);
  } catch (error) {
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

  logger.info(
    {
      mode: config.mode,
      signer: wallet.address,
      keySource: describeSignerSource(config.signer),
      oracle: config.oracleAddress,
      logDir: config.logDir,
      stateFile: config.stateFile,
    },
    'operator-telemetry starting',
  );

  let failed = 0;
  try {
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
    }
  } finally {
    await daemon.close();
    logger.info('stopped');
  }
  return once && failed > 0 ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(
      `operator-telemetry crashed: ${describeError(error)}\n${error instanceof Error ? error.stack : ''}\n`,
    );
    process.exitCode = 1;
  },
);
