import type { Logger } from 'pino';
import type { PendingRevision, TransactionRecord } from './state';

/**
 * What the polling service needs from a target, contract or API. A submitter resolves only
 * on proof of acceptance and throws RetryableError or RejectedError otherwise.
 */

export interface Acceptance {
  /** Transaction hash or API id, for the log line and `status`. */
  reference: string;
  /** Extra fields for the acceptance log line (block number, gas used). */
  details: Record<string, unknown>;
}

/** Status of a pending revision, found without sending anything. */
export type Inspection =
  | { state: 'accepted'; acceptance: Acceptance }
  | { state: 'in-flight'; reason: string }
  | { state: 'not-accepted'; reason: string }
  | { state: 'overtaken'; reason: string };

export interface DeliveryContext {
  signal: AbortSignal;
  logger: Logger;
  /** Persists the transaction before it is broadcast, so a crash cannot lose track of it. */
  recordTransaction(tx: TransactionRecord): Promise<void>;
}

export interface TargetInfo {
  chainId: bigint;
  /** Human-readable target for the start line: RPC URL and oracle, or API URL. */
  target: string;
}

export interface Submitter {
  /** Checks that the target is reachable and usable. Throws RetryableError while it is not. */
  connect(): Promise<TargetInfo>;
  /** Seconds since the epoch by the target's clock, for deadlines. */
  currentTime(): Promise<bigint>;
  inspect(revision: PendingRevision): Promise<Inspection>;
  deliver(revision: PendingRevision, context: DeliveryContext): Promise<Acceptance>;
  /**
   * Counts the users that already have attestations accepted by the target; undefined when the
   * target cannot be asked (the API).
   */
  usersWithAcceptedAttestations(users: string[]): Promise<number | undefined>;
  /** True when the signer may sign for the target; undefined when the target cannot tell. */
  signerAuthorised(): Promise<boolean | undefined>;
  close(): Promise<void>;
}
