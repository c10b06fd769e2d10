import pRetry from 'p-retry';
import { setTimeout as sleep } from 'node:timers/promises';
import { RetryableError } from './errors';

/**
 * The retry policy: at most `maxAttempts` attempts, waiting `baseDelayMs × 2^(n-1)` after
 * the n-th failure, or longer when the far side asked for it with `Retry-After`. Only a
 * RetryableError is retried; anything else ends the attempts at once.
 */

export interface RetryPolicy {
  maxAttempts: number;
  baseDelayMs: number;
}

export interface RetryHooks {
  signal: AbortSignal;
  /** Called before each wait, with the error and the wait that follows. */
  onRetry(error: RetryableError, attempt: number, delayMs: number): void;
}

/** Returns the wait after the n-th failed attempt (1-based), before any `Retry-After` floor. */
export function backoffDelayMs(policy: RetryPolicy, failedAttempt: number): number {
  return policy.baseDelayMs * 2 ** (failedAttempt - 1);
}

export async function withRetry<T>(
  policy: RetryPolicy,
  hooks: RetryHooks,
  attempt: (attemptNumber: number) => Promise<T>,
): Promise<T> {
  return pRetry(attempt, {
    retries: policy.maxAttempts - 1,
    factor: 2,
    minTimeout: policy.baseDelayMs,
    maxTimeout: Number.POSITIVE_INFINITY,
    randomize: false,
    signal: hooks.signal,
    shouldRetry: ({ error }) => error instanceof RetryableError,
    onFailedAttempt: async ({ error, attemptNumber, retriesLeft }) => {
      if (!(error instanceof RetryableError) || retriesLeft === 0) return;
      const delayMs = backoffDelayMs(policy, attemptNumber);
      const extraMs = Math.max(0, (error.retryAfterMs ?? 0) - delayMs);
      hooks.onRetry(error, attemptNumber, delayMs + extraMs);
      // p-retry waits delayMs after this hook returns; a longer Retry-After is made up here.
      if (extraMs > 0) await sleep(extraMs, undefined, { signal: hooks.signal });
    },
  });
}
