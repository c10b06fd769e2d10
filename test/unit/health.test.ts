import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { RetryableError } from '../../apps/operator/errors';
import {
  createReadinessCheck,
  defaultStallAfterMs,
  healthStatus,
  stallThresholdMs,
} from '../../apps/operator/health-server';
import type { ReadyReport } from '../../apps/operator/health-server';
import type { TargetInfo } from '../../apps/operator/submitter';

const POLL_MS = 10_000;
const STARTED_AT = Date.parse('2025-01-01T00:00:00.000Z');
const STALL_AFTER_MS = 3 * POLL_MS + 30_000;

describe('healthStatus', () => {
  test('default threshold formula', () => {
    assert.equal(defaultStallAfterMs(POLL_MS), STALL_AFTER_MS);
    assert.equal(defaultStallAfterMs(1000), 33_000);
  });

  test('starting within the grace period', () => {
    const report = healthStatus(
      { lastCycleAtMs: undefined },
      STARTED_AT + 5000,
      POLL_MS,
      STARTED_AT,
    );
    assert.equal(report.status, 'starting');
    assert.equal(report.lastCycleAt, null);
    assert.equal(report.idleMs, 5000);
    assert.equal(report.stallAfterMs, STALL_AFTER_MS);
    assert.equal(report.startedAt, '2025-01-01T00:00:00.000Z');
  });

  test('stalled without a first cycle', () => {
    const now = STARTED_AT + STALL_AFTER_MS + 1;
    const report = healthStatus({ lastCycleAtMs: undefined }, now, POLL_MS, STARTED_AT);
    assert.equal(report.status, 'stalled');
    assert.equal(report.lastCycleAt, null);
  });

  test('ok with a recent cycle', () => {
    const lastCycleAtMs = STARTED_AT + 60_000;
    const report = healthStatus({ lastCycleAtMs }, lastCycleAtMs + 1000, POLL_MS, STARTED_AT);
    assert.equal(report.status, 'ok');
    assert.equal(report.lastCycleAt, new Date(lastCycleAtMs).toISOString());
    assert.equal(report.idleMs, 1000);
  });

  test('ok exactly at the threshold', () => {
    const lastCycleAtMs = STARTED_AT + 60_000;
    const now = lastCycleAtMs + STALL_AFTER_MS;
    assert.equal(healthStatus({ lastCycleAtMs }, now, POLL_MS, STARTED_AT).status, 'ok');
  });

  test('stalled one millisecond past the threshold', () => {
    const lastCycleAtMs = STARTED_AT + 60_000;
    const now = lastCycleAtMs + STALL_AFTER_MS + 1;
    const report = healthStatus({ lastCycleAtMs }, now, POLL_MS, STARTED_AT);
    assert.equal(report.status, 'stalled');
    assert.equal(report.idleMs, STALL_AFTER_MS + 1);
  });

  test('last cycle counts, not start time', () => {
    // Started long ago, but a cycle just finished: healthy.
    const now = STARTED_AT + 10 * STALL_AFTER_MS;
    const report = healthStatus({ lastCycleAtMs: now - 100 }, now, POLL_MS, STARTED_AT);
    assert.equal(report.status, 'ok');
  });

  test('custom threshold', () => {
    const lastCycleAtMs = STARTED_AT;
    const now = lastCycleAtMs + STALL_AFTER_MS + 60_000;
    const custom = STALL_AFTER_MS + 120_000;
    const report = healthStatus({ lastCycleAtMs }, now, POLL_MS, STARTED_AT, custom);
    assert.equal(report.status, 'ok');
    assert.equal(report.stallAfterMs, custom);
  });

  test('clock stepped backwards is ok', () => {
    const lastCycleAtMs = STARTED_AT + 60_000;
    const report = healthStatus({ lastCycleAtMs }, lastCycleAtMs - 5000, POLL_MS, STARTED_AT);
    assert.equal(report.status, 'ok');
    assert.equal(report.idleMs, 0);
  });
});

describe('stallThresholdMs', () => {
  const config = {
    pollIntervalMs: 10_000,
    maxRetries: 5,
    retryDelayMs: 2000,
    requestTimeoutMs: 15_000,
    txTimeoutMs: 120_000,
  };

  test('contract mode covers receipt waits', () => {
    // 60 s default + 5 attempts × (120 s + 15 s) + waits of 2 + 4 + 8 + 16 s.
    assert.equal(stallThresholdMs({ ...config, mode: 'contract' }), 60_000 + 675_000 + 30_000);
  });

  test('API mode covers request timeouts', () => {
    // 60 s default + 5 attempts × 15 s + waits of 2 + 4 + 8 + 16 s.
    assert.equal(stallThresholdMs({ ...config, mode: 'api' }), 60_000 + 75_000 + 30_000);
  });

  test('single attempt has no waits', () => {
    const single = { ...config, mode: 'api' as const, maxRetries: 1 };
    assert.equal(stallThresholdMs(single), 60_000 + 15_000);
  });
});

function assertNotReady(report: ReadyReport): Extract<ReadyReport, { status: 'not ready' }> {
  if (report.status !== 'not ready')
    assert.fail(`expected not ready, got ${JSON.stringify(report)}`);
  return report;
}

/** Fake submitter whose results the test sets, counting connect() calls. */
class FakeTarget {
  reachable = true;
  authorised: boolean | undefined = true;
  /** When set, connect() waits for this promise. */
  hang: Promise<void> | undefined;
  connectCalls = 0;

  async connect(): Promise<TargetInfo> {
    this.connectCalls += 1;
    if (this.hang !== undefined) await this.hang;
    if (!this.reachable) {
      throw new RetryableError('the RPC endpoint http://127.0.0.1:1 is unreachable (ECONNREFUSED)');
    }
    return { chainId: 31337n, target: 'fake' };
  }

  signerAuthorised(): Promise<boolean | undefined> {
    return Promise.resolve(this.authorised);
  }
}

describe('createReadinessCheck', () => {
  test('ready when reachable and authorised', async () => {
    const target = new FakeTarget();
    const ready = createReadinessCheck({ submitter: target, timeoutMs: 1000, cacheMs: 0 });
    assert.deepEqual(await ready(), { status: 'ready', signerAuthorised: true });
  });

  test('ready when the target cannot tell', async () => {
    const target = new FakeTarget();
    target.authorised = undefined;
    const ready = createReadinessCheck({ submitter: target, timeoutMs: 1000, cacheMs: 0 });
    assert.deepEqual(await ready(), { status: 'ready', signerAuthorised: null });
  });

  test('unreachable target is not ready', async () => {
    const target = new FakeTarget();
    target.reachable = false;
    const ready = createReadinessCheck({ submitter: target, timeoutMs: 1000, cacheMs: 0 });
    const report = assertNotReady(await ready());
    assert.equal(report.reason, 'target-unreachable');
    assert.match(report.message, /ECONNREFUSED/);
  });

  test('unauthorised signer is not ready', async () => {
    const target = new FakeTarget();
    target.authorised = false;
    const ready = createReadinessCheck({ submitter: target, timeoutMs: 1000, cacheMs: 0 });
    const report = assertNotReady(await ready());
    assert.equal(report.reason, 'signer-not-authorised');
    assert.match(report.message, /setSigner/);
  });

  test('slow target times out', async () => {
    const target = new FakeTarget();
    let release = (): void => undefined;
    target.hang = new Promise<void>((resolve) => {
      release = resolve;
    });
    const ready = createReadinessCheck({ submitter: target, timeoutMs: 20, cacheMs: 0 });
    const report = assertNotReady(await ready());
    release();
    assert.equal(report.reason, 'check-timed-out');
    assert.match(report.message, /timed out after 20 ms/);
  });

  test('result reused within the cache time', async () => {
    const target = new FakeTarget();
    let nowMs = 0;
    const ready = createReadinessCheck({
      submitter: target,
      timeoutMs: 1000,
      cacheMs: 5000,
      now: () => nowMs,
    });

    assert.equal((await ready()).status, 'ready');
    target.reachable = false;
    nowMs = 4999;
    assert.equal((await ready()).status, 'ready');
    assert.equal(target.connectCalls, 1);

    nowMs = 5000;
    assert.equal((await ready()).status, 'not ready');
    assert.equal(target.connectCalls, 2);
  });

  test('concurrent probes share one check', async () => {
    const target = new FakeTarget();
    let release = (): void => undefined;
    target.hang = new Promise<void>((resolve) => {
      release = resolve;
    });
    const ready = createReadinessCheck({ submitter: target, timeoutMs: 1000, cacheMs: 0 });

    const probes = [ready(), ready(), ready()];
    release();
    const reports = await Promise.all(probes);
    assert.equal(target.connectCalls, 1);
    for (const report of reports) assert.equal(report.status, 'ready');
  });
});
