import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { TargetMode } from '../support/exactly-once';
import {
  SEED_VARIABLE,
  chooseSeed,
  explainFailures,
  runCrashScenario,
} from '../support/exactly-once';

const KILLS = 20;
const REVISIONS = 200;

// In API mode the server also injects CRASH_API_FAULTS: lost 201 responses, resets and 5xx errors.
for (const mode of ['contract', 'api'] as TargetMode[]) {
  describe(`crash recovery in ${mode} mode`, () => {
    test('kill -9 loop, exactly once', { timeout: 200_000 }, async (t) => {
      const seed = chooseSeed();
      t.diagnostic(`seed ${seed}; repeat with ${SEED_VARIABLE}=${seed}`);

      const result = await runCrashScenario({
        mode,
        kills: KILLS,
        revisions: REVISIONS,
        seed,
        finalTimeoutMs: 120_000,
        onProgress: (message) => t.diagnostic(message),
      });
      const details = `seed ${seed}\n${explainFailures(result)}`;

      assert.equal(
        result.report.expected,
        REVISIONS,
        `every planned revision was written\n${details}`,
      );
      assert.equal(
        result.runs.filter((run) => run.killed).length,
        KILLS,
        `the daemon was killed ${KILLS} times\n${details}`,
      );
      assert.equal(result.earlyExits.length, 0, `no run exited before its kill\n${details}`);
      assert.ok(result.finished, `the final run delivered everything in time\n${details}`);
      assert.equal(
        result.finalRun?.code,
        0,
        `the final run stopped cleanly on SIGTERM\n${details}`,
      );
      assert.equal(
        result.report.duplicates.length,
        0,
        `no revision was accepted twice\n${details}`,
      );
      assert.equal(result.report.missing.length, 0, `every revision was accepted\n${details}`);
      assert.equal(
        result.report.unexpected.length,
        0,
        `nothing unplanned was accepted\n${details}`,
      );
    });
  });
}
