import { performance } from 'node:perf_hooks';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { RejectedError, RetryableError } from '../../apps/operator/errors';
import type { RetryHooks, RetryPolicy } from '../../apps/operator/retry';
import { backoffDelayMs, withRetry } from '../../apps/operator/retry';
import { parseRetryAfter } from '../../apps/operator/submitter-api';

const BASE_MS = 20;

// Node starts a timer from the event loop's cached millisecond clock, so measured with
// performance.now() a wait can end slightly early.
const TIMER_SLACK_MS = 5;

/** Generous ceiling: it only catches waits of seconds where milliseconds were requested. */
const GENEROUS_MS = 5000;

interface Recorder {
  hooks: RetryHooks;
  retries: Array<{ attempt: number; delayMs: number }>;
  attemptTimes: number[];
}

function recorder(signal: AbortSignal = new AbortController().signal): Recorder {
  const retries: Array<{ attempt: number; delayMs: number }> = [];
  return {
    hooks: {
      signal,
      onRetry: (_error, attempt, delayMs) => retries.push({ attempt, delayMs }),
    },
    retries,
    attemptTimes: [],
  };
}

/** An attempt that throws the given errors in turn, then returns `done`. */
function failing(record: Recorder, errors: Error[]): (attemptNumber: number) => Promise<string> {
  return (attemptNumber) => {
    record.attemptTimes.push(performance.now());
    const error = errors[attemptNumber - 1];
    return error === undefined ? Promise.resolve('done') : Promise.reject(error);
  };
}

function gaps(times: number[]): number[] {
  return times.slice(1).map((time, index) => time - (times[index] ?? time));
}

describe('withRetry', () => {
  const policy: RetryPolicy = { maxAttempts: 4, baseDelayMs: BASE_MS };

  test('first success returns at once', async () => {
    const record = recorder();
    assert.equal(await withRetry(policy, record.hooks, failing(record, [])), 'done');
    assert.equal(record.attemptTimes.length, 1);
    assert.deepEqual(record.retries, []);
  });

  test('retryable errors retried until success', async () => {
    const record = recorder();
    const errors = [new RetryableError('503'), new RetryableError('timeout')];

    assert.equal(await withRetry(policy, record.hooks, failing(record, errors)), 'done');
    assert.equal(record.attemptTimes.length, 3);
    assert.deepEqual(record.retries, [
      { attempt: 1, delayMs: BASE_MS },
      { attempt: 2, delayMs: 2 * BASE_MS },
    ]);
  });

  test('at most maxAttempts attempts', async () => {
    const record = recorder();
    const errors = Array.from(
      { length: 10 },
      (_, index) => new RetryableError(`failure ${index + 1}`),
    );

    await assert.rejects(withRetry(policy, record.hooks, failing(record, errors)), /failure 4/);
    assert.equal(record.attemptTimes.length, 4);
    assert.equal(record.retries.length, 3, 'no wait is announced after the last attempt');
  });

  test('single attempt policy never retries', async () => {
    const record = recorder();
    const single = { maxAttempts: 1, baseDelayMs: BASE_MS };
    await assert.rejects(
      withRetry(single, record.hooks, failing(record, [new RetryableError('503')])),
      RetryableError,
    );
    assert.equal(record.attemptTimes.length, 1);
  });

  const permanent: Array<[string, Error]> = [
    ['plain Error', new Error('bug')],
    ['RejectedError', new RejectedError('nonce-used', 'nonce used')],
    ['TypeError', new TypeError('undefined is not a function')],
  ];
  for (const [name, error] of permanent) {
    test(`${name} not retried`, async () => {
      const record = recorder();
      await assert.rejects(
        withRetry(policy, record.hooks, failing(record, [error])),
        (thrown: unknown) => {
          assert.equal(thrown, error);
          return true;
        },
      );
      assert.equal(record.attemptTimes.length, 1);
      assert.deepEqual(record.retries, []);
    });
  }

  test('waits double each time', async () => {
    const record = recorder();
    const errors = Array.from({ length: 4 }, () => new RetryableError('503'));
    const started = performance.now();

    await assert.rejects(withRetry(policy, record.hooks, failing(record, errors)), RetryableError);
    const elapsed = performance.now() - started;

    const expected = [BASE_MS, 2 * BASE_MS, 4 * BASE_MS];
    assert.deepEqual(
      record.retries.map((retry) => retry.delayMs),
      expected,
    );
    for (const [index, gap] of gaps(record.attemptTimes).entries()) {
      const expectedMs = expected[index] ?? 0;
      assert.ok(
        gap >= expectedMs - TIMER_SLACK_MS,
        `wait ${index + 1} was ${gap} ms, expected ${expectedMs}`,
      );
    }
    assert.ok(elapsed >= 7 * BASE_MS - 3 * TIMER_SLACK_MS, `total ${elapsed} ms`);
    assert.ok(elapsed < GENEROUS_MS, `total ${elapsed} ms`);
  });

  test('Retry-After sets minimum wait', async () => {
    const record = recorder();
    const errors = [
      new RetryableError('429', { retryAfterMs: 150 }),
      new RetryableError('429', { retryAfterMs: 5 }),
    ];

    assert.equal(await withRetry(policy, record.hooks, failing(record, errors)), 'done');

    assert.deepEqual(record.retries, [
      { attempt: 1, delayMs: 150 },
      { attempt: 2, delayMs: 2 * BASE_MS },
    ]);
    const [first, second] = gaps(record.attemptTimes);
    assert.ok((first ?? 0) >= 150 - 2 * TIMER_SLACK_MS, `first wait ${first} ms`);
    assert.ok((second ?? 0) >= 2 * BASE_MS - TIMER_SLACK_MS, `second wait ${second} ms`);
    assert.ok((first ?? 0) < GENEROUS_MS, `first wait ${first} ms`);
  });

  test('abort stops waiting', async () => {
    const controller = new AbortController();
    const record = recorder(controller.signal);
    const slow = { maxAttempts: 3, baseDelayMs: 60_000 };
    const attempt = failing(record, [new RetryableError('503'), new RetryableError('503')]);
    const started = performance.now();

    const result = withRetry(slow, record.hooks, attempt);
    setTimeout(() => controller.abort(new Error('stopping')), 20);

    await assert.rejects(result, /stopping/);
    assert.equal(record.attemptTimes.length, 1);
    assert.ok(performance.now() - started < GENEROUS_MS);
  });

  const delays: Array<[number, number]> = [
    [1, 20],
    [2, 40],
    [3, 80],
    [6, 640],
  ];
  for (const [failedAttempt, expected] of delays) {
    test(`backoffDelayMs after attempt ${failedAttempt}`, () => {
      assert.equal(backoffDelayMs(policy, failedAttempt), expected);
    });
  }
});

describe('parseRetryAfter', () => {
  const nowMs = Date.parse('Wed, 21 Oct 2026 07:28:00 GMT');

  const cases: Array<[string | null, number | undefined]> = [
    [null, undefined],
    ['', undefined],
    ['   ', undefined],
    ['soon', undefined],
    ['120', 120_000],
    ['0', 0],
    ['1.5', 1500],
    ['-5', 0],
    ['3600', 600_000],
    ['Wed, 21 Oct 2026 07:28:30 GMT', 30_000],
    ['Wed, 21 Oct 2026 07:27:00 GMT', 0],
    ['Thu, 22 Oct 2026 07:28:00 GMT', 600_000],
  ];
  for (const [header, expected] of cases) {
    test(`Retry-After ${JSON.stringify(header)} gives ${expected}`, () => {
      assert.equal(parseRetryAfter(header, nowMs), expected);
    });
  }
});

describe('parseRetryAfter strictness', () => {
  test('hex and exponent not seconds', () => {
    assert.equal(parseRetryAfter('0x10', 0), undefined);
    assert.equal(parseRetryAfter('1e3', 0), undefined);
  });
});
