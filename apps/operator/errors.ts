/**
 * The few error kinds the daemon acts on. Retry decisions read the class, never the
 * message text, so every place that catches an error from the outside world classifies
 * it into one of these first.
 */

/** Configuration that cannot work. The entry point exits with code 78 (EX_CONFIG). */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

/** A state file that is unreadable, corrupt, of an unknown version or owned by another process. */
export class StateError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'StateError';
  }
}

/** Another running daemon owns the state file. */
export class StateLockedError extends StateError {
  constructor(message: string) {
    super(message);
    this.name = 'StateLockedError';
  }
}

/** A failure that can succeed on a later attempt: network errors, timeouts, 5xx, 429. */
export class RetryableError extends Error {
  /** Minimum wait before the next attempt, when the far side asked for one (`Retry-After`). */
  readonly retryAfterMs: number | undefined;

  constructor(message: string, options?: ErrorOptions & { retryAfterMs?: number }) {
    super(message, options);
    this.name = 'RetryableError';
    this.retryAfterMs = options?.retryAfterMs;
  }
}

/**
 * Reason the contract or the API rejected an attestation. `deadline-passed` and `nonce-used`
 * can be repaired by the daemon itself (sign again); the others need the operator.
 */
export type RejectionReason =
  | 'deadline-passed'
  | 'nonce-used'
  | 'signer-not-authorised'
  | 'bad-request'
  | 'unauthorised-token'
  | 'wrong-domain'
  | 'unexpected-status';

/** The target looked at the attestation and refused it; sending the same bytes again will not help. */
export class RejectedError extends Error {
  constructor(
    readonly reason: RejectionReason,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'RejectedError';
  }
}

/** Signals an operator-requested stop; work in flight is left for the next start to reconcile. */
export class StopRequestedError extends Error {
  constructor() {
    super('stop requested');
    this.name = 'StopRequestedError';
  }
}

/** Returns a one-line description of any thrown value, for log messages. */
export function describeError(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}
