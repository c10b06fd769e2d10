/**
 * Chaos run: the crash test of test/integration/crash.test.ts
 * at a larger scale. It kills the built daemon with SIGKILL at seeded random moments while it
 * delivers, lets a last run finish without kills, and checks that the target accepted every
 * revision exactly once. Contract mode runs against anvil on 127.0.0.1; API mode runs
 * against the test ingestion server on 127.0.0.1, which also injects errors, resets and
 * lost responses.
 *
 * Usage (build the daemon first with `npm run build`):
 *
 *   npx tsx scripts/chaos.ts [--mode contract|api] [--kills N] [--revisions N] [--seed N]
 *
 * Defaults: contract mode, 100 kills, 1000 revisions, a random seed. The seed is printed
 * first; `--seed` repeats a run's logs, kill delays and API faults, but not the timing of
 * the processes, so a failure may need a few tries to come back.
 *
 * Exit codes: 0 when every revision was accepted exactly once, 1 on any duplicate, missing
 * or unexpected revision, on a run that exited before its kill, or on a final run that ran
 * out of time; 2 for invalid arguments.
 */
import { parseArgs } from 'node:util';
import type { CrashRunResult, TargetMode } from '../test/support/exactly-once';
import { explainFailures, runCrashScenario } from '../test/support/exactly-once';

interface ChaosOptions {
  mode: TargetMode;
  kills: number;
  revisions: number;
  seed: number;
}

const USAGE =
  'usage: npx tsx scripts/chaos.ts [--mode contract|api] [--kills N] [--revisions N] [--seed N]';

/**
 * The final run gets 300 ms per revision, and at least a minute. Contract mode delivered
 * about 13 revisions a second on a loaded 2-core machine, so this leaves room for a run
 * whose kills all hit the daemon before it connected.
 */
const FINAL_TIMEOUT_PER_REVISION_MS = 300;
const MIN_FINAL_TIMEOUT_MS = 60_000;

function parseOptions(argv: string[]): ChaosOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      mode: { type: 'string', default: 'contract' },
      kills: { type: 'string', default: '100' },
      revisions: { type: 'string', default: '1000' },
      seed: { type: 'string' },
    },
  });

  if (values.mode !== 'contract' && values.mode !== 'api') {
    throw new Error(`--mode is ${values.mode}: expected contract or api`);
  }
  return {
    mode: values.mode,
    kills: wholeNumber('--kills', values.kills, 0),
    revisions: wholeNumber('--revisions', values.revisions, 2),
    seed:
      values.seed === undefined
        ? Math.floor(Math.random() * 0x100000000)
        : wholeNumber('--seed', values.seed, 0, 0xffffffff),
  };
}

function wholeNumber(name: string, text: string, min: number, max = 1_000_000): number {
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < min || value > max) {
    throw new Error(`${name} is ${text}: expected a whole number from ${min} to ${max}`);
  }
  return value;
}

/** Counts revisions accepted exactly once as passed, and every other finding as failed. */
function summarise(result: CrashRunResult): { passed: number; failed: number } {
  const { report } = result;
  const failed = report.duplicates.length + report.missing.length + report.unexpected.length;
  return { passed: report.exactlyOnce, failed };
}

async function main(): Promise<number> {
  let options: ChaosOptions;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (error) {
    console.error(`${error instanceof Error ? error.message : String(error)}\n${USAGE}`);
    return 2;
  }

  console.log(
    `chaos run: ${options.mode} mode, ${options.kills} kills, ${options.revisions} revisions, ` +
      `seed ${options.seed} (repeat with --seed ${options.seed})`,
  );
  const result = await runCrashScenario({
    ...options,
    finalTimeoutMs: Math.max(
      MIN_FINAL_TIMEOUT_MS,
      options.revisions * FINAL_TIMEOUT_PER_REVISION_MS,
    ),
    onProgress: (message) => console.log(message),
  });

  const { passed, failed } = summarise(result);
  const clean = failed === 0 && result.earlyExits.length === 0 && result.finished;
  if (!clean) console.log(explainFailures(result));
  console.log(
    `${passed} passed, ${failed} failed: ${result.report.duplicates.length} duplicated, ` +
      `${result.report.missing.length} missing, ${result.report.unexpected.length} unexpected; ` +
      `${result.runs.filter((run) => run.killed).length} kills, ` +
      `${result.earlyExits.length} early exits, final run ${result.finished ? 'finished' : 'timed out'}; ` +
      `${Math.round(result.durationMs / 1000)} s; seed ${result.seed}`,
  );
  return clean ? 0 : 1;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(`chaos run failed: ${error instanceof Error ? error.stack : String(error)}`);
    process.exitCode = 1;
  },
);
