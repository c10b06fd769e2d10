import { createHash } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TypedDataDomain, Wallet } from 'ethers';
import type { Logger } from 'pino';
import type { Attestation, AttestationFigures } from './attestation';
import {
  AttestationSigner,
  attestationDomain,
  attestationFromJson,
  attestationToJson,
  figuresFingerprint,
  mapFigures,
} from './attestation';
import type { Config } from './config';
import type { JobLog } from './energy-log';
import {
  RejectedError,
  RetryableError,
  StateError,
  StopRequestedError,
  describeError,
} from './errors';
import type { NonceProvider } from './nonces';
import { backoffDelayMs, withRetry } from './retry';
import type { CycleObserver } from './metrics';
import type { LogScanner, ScannedFile } from './scanner';
import type { PendingRevision, StateStore } from './state';
import { revisionKey } from './state';
import type { Acceptance, Submitter, TargetInfo } from './submitter';
import { TelemetryStats } from './stats';

/**
 * The polling service: scan the logs, find due revisions, sign them, deliver them and
 * record them, cycle after cycle.
 *
 * Revisions of one agent are delivered one at a time in nonce order, because the contract
 * and the API refuse a nonce below one already accepted. Different agents proceed in
 * parallel, up to TELEMETRY_CONCURRENCY, so that one block or one second carries many.
 */

/** A revision found in the logs that is newer than the last attested one. */
interface DueRevision {
  key: string;
  log: JobLog;
  figures: AttestationFigures;
  fingerprint: string;
  file: string;
}

/** One unit of work in a cycle: a revision already signed, or one still to sign. */
type WorkItem = { kind: 'pending'; revision: PendingRevision } | { kind: 'due'; due: DueRevision };

interface Backoff {
  failures: number;
  nextAttemptAtMs: number;
}

export interface CycleResult {
  started: number;
  accepted: number;
  failed: number;
  /** The batch cap was reached and more work is waiting: start the next cycle at once. */
  capReached: boolean;
  /** Revisions due or pending after the cycle. */
  remaining: number;
}

/** Maximum wait between two attempts of a revision that keeps failing, across cycles. */
const MAX_CYCLE_BACKOFF_MS = 15 * 60 * 1000;
/** Maximum wait between two connection attempts at start. */
const MAX_CONNECT_DELAY_MS = 60 * 1000;
/** A changed file usually comes with several events; they are gathered for this long. */
const WATCH_DEBOUNCE_MS = 50;

export interface ServiceDependencies {
  config: Config;
  logger: Logger;
  state: StateStore;
  scanner: LogScanner;
  submitter: Submitter;
  nonces: NonceProvider;
  wallet: Wallet;
  stats?: TelemetryStats;
  /** Receives each cycle's duration for the metrics histogram. */
  cycleObserver?: CycleObserver | undefined;
}

export class TelemetryService {
  readonly stats: TelemetryStats;
  private readonly config: Config;
  private readonly logger: Logger;
  private readonly state: StateStore;
  private readonly due = new Map<string, DueRevision>();
  private readonly backoff = new Map<string, Backoff>();
  private readonly warnedFigures = new Set<string>();
  private readonly abort = new AbortController();
  private signer: AttestationSigner | undefined;
  private target: TargetInfo | undefined;
  private wake: (() => void) | undefined;
  private wakeTimer: NodeJS.Timeout | undefined;
  private changedSinceCycle = false;
  private emptyStateChecked = false;
  private readonly progress = new BacklogProgress();

  constructor(private readonly deps: ServiceDependencies) {
    this.config = deps.config;
    this.logger = deps.logger;
    this.state = deps.state;
    this.stats = deps.stats ?? new TelemetryStats();
    // Every delivery in flight listens for the stop signal.
    setMaxListeners(Math.max(64, deps.config.concurrency * 4), this.abort.signal);
  }

  get stopping(): boolean {
    return this.abort.signal.aborted;
  }

  /** Stops after the current step; deliveries in flight are left for the next start to reconcile. */
  stop(): void {
    this.abort.abort(new StopRequestedError());
    this.wake?.();
  }

  /** Connects, reconciles what a previous run left in flight, then runs cycles until stopped. */
  async run(options: { once?: boolean } = {}): Promise<CycleResult | undefined> {
    if (this.target === undefined) await this.connect();
    if (this.stopping) return undefined;
    await this.reconcile();
    if (this.config.watch && options.once !== true) this.watchLogs();

    let last: CycleResult | undefined;
    try {
      while (!this.stopping) {
        last = await this.runCycle();
        if (options.once === true) break;
        if (!last.capReached) await this.waitForNextCycle();
      }
    } finally {
      this.deps.scanner.close();
    }
    return last;
  }

  /** Watches the log folders, so that a change starts a cycle and quiet folders are skipped. */
  watchLogs(): void {
    this.deps.scanner.watch(() => this.onFilesChanged());
  }

  /** Connects to the target, retrying with a growing delay for as long as it is unreachable. */
  async connect(): Promise<TargetInfo | undefined> {
    for (let attempt = 1; !this.stopping; attempt += 1) {
      try {
        this.target = await this.deps.submitter.connect();
        this.signer = new AttestationSigner(
          this.deps.wallet,
          attestationDomain(this.target.chainId, this.config.oracleAddress),
        );
        await this.checkSigner();
        this.stats.targetReachable = true;
        return this.target;
      } catch (error) {
        if (!(error instanceof RetryableError)) throw error;
        this.stats.targetReachable = false;
        const delayMs = Math.min(
          backoffDelayMs({ maxAttempts: 0, baseDelayMs: this.config.retryDelayMs }, attempt),
          MAX_CONNECT_DELAY_MS,
        );
        this.logger.warn(
          { attempt, retryInMs: delayMs, err: error.message },
          'target not reachable yet; retrying',
        );
        await this.pause(delayMs);
      }
    }
    return undefined;
  }

  get targetInfo(): TargetInfo | undefined {
    return this.target;
  }

  /**
   * Signs what is due and hands each attestation to `print`, without sending anything or
   * writing state. Nonces continue from what the state file and the chain show.
   */
  async dryRun(print: (line: Record<string, unknown>) => void): Promise<number> {
    this.target = await this.deps.submitter.connect();
    const signer = new AttestationSigner(
      this.deps.wallet,
      attestationDomain(this.target.chainId, this.config.oracleAddress),
    );
    await this.scan(Date.now());

    const nextNonce = new Map<string, bigint>();
    const due = [...this.due.values()].sort((a, b) => a.log.lastUpdatedMs - b.log.lastUpdatedMs);
    const now = await this.deps.submitter.currentTime();
    for (const revision of due) {
      const user = revision.log.agent;
      const nonce = nextNonce.get(user) ?? (await this.deps.nonces.next(user));
      nextNonce.set(user, nonce + 1n);
      const attestation: Attestation = {
        ...revision.figures,
        nonce,
        deadline: now + BigInt(this.config.deadlineBufferSec),
      };
      print({
        file: revision.file,
        attestation: attestationToJson(attestation),
        ...signer.sign(attestation),
      });
    }
    return due.length;
  }

  /** Runs one cycle: scan, choose up to TELEMETRY_MAX_BATCH revisions, deliver them. */
  async runCycle(): Promise<CycleResult> {
    const startedAt = Date.now();
    this.changedSinceCycle = false;
    await this.scan(startedAt);
    if (!(await this.emptyStateIsSafe())) {
      return { started: 0, accepted: 0, failed: 0, capReached: false, remaining: this.due.size };
    }

    const work = this.chooseWork(startedAt);
    const lanes = groupByUser(work.items);
    let accepted = 0;
    let failed = 0;

    await runWithConcurrency(lanes, this.config.concurrency, async (lane) => {
      for (const item of lane) {
        if (this.stopping) return;
        const ok = await this.process(item);
        if (ok) accepted += 1;
        else {
          failed += 1;
          return; // Later revisions of this agent wait, so that its nonces stay in order.
        }
      }
    });

    const backlog = this.due.size + this.state.pending().length;
    const durationMs = Date.now() - startedAt;
    this.stats.recordCycle(durationMs, backlog);
    this.deps.cycleObserver?.observeCycle(durationMs);
    this.state.noteCycle(Date.now());
    this.progress.update(backlog, accepted, this.logger);
    const result = {
      started: work.items.length,
      accepted,
      failed,
      capReached: work.capReached,
      remaining: backlog,
    };
    if (work.items.length > 0)
      this.logger.debug({ ...result, durationMs: Date.now() - startedAt }, 'cycle finished');
    return result;
  }

  /**
   * Guards against a lost or misplaced state file, which would send every job again. While
   * the state is empty, the oracle must not have accepted anything for the logged agents
   * yet, unless TELEMETRY_ALLOW_EMPTY_STATE is true. Returns false to skip this cycle when
   * the oracle cannot be read; throws a StateError when the check fails.
   */
  private async emptyStateIsSafe(): Promise<boolean> {
    if (this.emptyStateChecked || !this.state.isEmpty() || this.due.size === 0) return true;

    const users = [...new Set([...this.due.values()].map((due) => due.log.agent))];
    let attestedUsers: number | undefined;
    try {
      attestedUsers = await this.deps.submitter.usersWithAcceptedAttestations(users);
    } catch (error) {
      this.logger.warn(
        { err: describeError(error) },
        'checking the oracle before the first attestation failed; retrying next cycle',
      );
      return false;
    }
    this.emptyStateChecked = true;

    if (attestedUsers === undefined) {
      this.logger.warn(
        { stateFile: this.state.file, jobs: this.due.size },
        'the state file is empty, so every job in the log folder is attested; if this daemon delivered attestations before, stop it and restore its state file',
      );
      return true;
    }
    if (attestedUsers > 0 && !this.config.allowEmptyState) {
      throw new StateError(
        `the state file ${this.state.file} is empty, but the oracle already accepted attestations for ${attestedUsers} of the ${users.length} agents in the log folder; ` +
          'a previous state file may be lost or TELEMETRY_STATE_FILE may point at the wrong file. Restore the state file; ' +
          'only if another operator attests for the same agents, set TELEMETRY_ALLOW_EMPTY_STATE=true (every job in the log folder is then attested again)',
      );
    }
    if (attestedUsers > 0) {
      this.logger.warn(
        { stateFile: this.state.file, agents: attestedUsers },
        'the state file is empty although the oracle has attestations for these agents; continuing because TELEMETRY_ALLOW_EMPTY_STATE is true',
      );
    }
    return true;
  }

  /** Settles what a previous run left signed and possibly sent, before any new work. */
  private async reconcile(): Promise<void> {
    for (const revision of this.state.pending()) {
      if (this.stopping) return;
      const ids = revisionIds(revision);
      try {
        const inspection = await this.deps.submitter.inspect(revision);
        if (inspection.state === 'accepted') {
          await this.markDone(revision, inspection.acceptance, 0);
          this.logger.info(
            { ...ids },
            'reconciled: the revision left in flight was accepted; recorded as done',
          );
        } else if (inspection.state === 'overtaken') {
          this.logger.warn(
            { ...ids, reason: inspection.reason },
            'reconciled: nonce overtaken; the revision will be signed with a new nonce',
          );
        } else if (inspection.state === 'in-flight') {
          this.logger.info(
            { ...ids, reason: inspection.reason },
            'reconciled: transaction still in flight; waiting for it',
          );
        } else {
          this.logger.info(
            { ...ids, reason: inspection.reason },
            'reconciled: not accepted yet; sending the same attestation again',
          );
        }
      } catch (error) {
        this.logger.warn(
          { ...ids, err: describeError(error) },
          'reconciling a revision failed; it is retried in the next cycle',
        );
      }
    }
  }

  private async scan(nowMs: number): Promise<void> {
    const result = await this.deps.scanner.scan(nowMs, (scanned) => this.handleScanned(scanned));
    for (const problem of result.problems) {
      this.logger.warn({ path: problem.path }, problem.reason);
    }
  }

  private handleScanned(scanned: ScannedFile): void {
    if (scanned.outcome.ok) {
      this.consider(scanned.file, scanned.outcome.log);
      return;
    }
    if (!scanned.report) return;
    this.stats.recordSkip(scanned.outcome.skip.code);
    this.logger.warn(
      { file: scanned.file, reason: scanned.outcome.skip.code },
      `log skipped: ${scanned.outcome.skip.reason}`,
    );
  }

  /** Decides whether a parsed log is a new revision to attest. */
  private consider(file: string, log: JobLog): void {
    const key = revisionKey(log.agent, log.jobId);
    const figures = mapFigures(log, this.config);
    if (typeof figures === 'string') {
      this.stats.recordSkip('invalid-number');
      this.logger.warn({ file, reason: 'invalid-number' }, `log skipped: ${figures}`);
      return;
    }

    const fingerprint = figuresFingerprint(figures);
    const done = this.state.done(key);
    const pending = this.state.pendingFor(key);
    const ids = {
      file,
      agent: log.agent,
      jobId: log.jobId.toString(),
      lastUpdated: new Date(log.lastUpdatedMs).toISOString(),
    };

    // Two files can name the same job (`12.json` and `0x0c.json`, or two spellings of the
    // agent's folder). The newest revision wins whichever file is read last.
    const queued = this.due.get(key);
    if (queued !== undefined && queued.file !== file) {
      this.warnDuplicateFile(ids, queued.file);
      if (queued.log.lastUpdatedMs >= log.lastUpdatedMs) return;
    }

    if (done !== undefined && log.lastUpdatedMs <= done.lastUpdatedMs) {
      if (queued?.file === file) this.due.delete(key);
      this.warnIfDiverged(
        ids,
        done.lastUpdatedMs,
        done.fingerprint,
        log.lastUpdatedMs,
        fingerprint,
      );
      return;
    }
    if (pending !== undefined && log.lastUpdatedMs <= pending.lastUpdatedMs) {
      this.warnIfDiverged(
        ids,
        pending.lastUpdatedMs,
        pending.fingerprint,
        log.lastUpdatedMs,
        fingerprint,
      );
      return;
    }
    this.due.set(key, { key, log, figures, fingerprint, file });
  }

  private warnDuplicateFile(ids: Record<string, string>, otherFile: string): void {
    const warning = `duplicate|${[ids.file, otherFile].sort().join('|')}`;
    if (this.warnedFigures.has(warning)) return;
    this.warnedFigures.add(warning);
    this.logger.warn(
      { ...ids, otherFile },
      'two log files name the same agent and job; only the newest revision of the two is attested',
    );
  }

  private warnIfDiverged(
    ids: Record<string, string>,
    attestedMs: number,
    attestedFingerprint: string,
    logMs: number,
    fingerprint: string,
  ): void {
    const warning = `${ids.file}|${logMs}|${fingerprint}`;
    if (this.warnedFigures.has(warning)) return;
    if (logMs < attestedMs) {
      this.warnedFigures.add(warning);
      this.logger.warn(
        { ...ids, attested: new Date(attestedMs).toISOString() },
        'log is older than the revision already attested for this job; not sent',
      );
    } else if (fingerprint !== attestedFingerprint) {
      this.warnedFigures.add(warning);
      this.logger.warn(
        ids,
        'log figures changed but lastUpdated did not; the attested figures no longer match the log, and it is not sent again',
      );
    }
  }

  private chooseWork(nowMs: number): { items: WorkItem[]; capReached: boolean } {
    const candidates: Array<{ item: WorkItem; lastUpdatedMs: number; key: string }> = [];
    for (const revision of this.state.pending()) {
      candidates.push({
        item: { kind: 'pending', revision },
        lastUpdatedMs: revision.lastUpdatedMs,
        key: revision.key,
      });
    }
    for (const due of this.due.values()) {
      candidates.push({
        item: { kind: 'due', due },
        lastUpdatedMs: due.log.lastUpdatedMs,
        key: due.key,
      });
    }

    // An agent whose signed revision waits out a backoff starts nothing new either, so that
    // its nonces are still used in order.
    const waiting = (key: string): boolean => (this.backoff.get(key)?.nextAttemptAtMs ?? 0) > nowMs;
    const blockedUsers = new Set(
      this.state
        .pending()
        .filter((revision) => waiting(revision.key))
        .map((revision) => revision.user),
    );
    const ready = candidates.filter(
      (candidate) =>
        !waiting(candidate.key) &&
        !(candidate.item.kind === 'due' && blockedUsers.has(candidate.item.due.log.agent)),
    );
    // Signed revisions go first: they hold the lowest nonces of their agent, and a newer
    // revision accepted before them would overtake those nonces.
    ready.sort((a, b) => rank(a.item) - rank(b.item) || a.lastUpdatedMs - b.lastUpdatedMs);
    const items = ready.slice(0, this.config.maxBatch).map((candidate) => candidate.item);
    return { items, capReached: ready.length > this.config.maxBatch };
  }

  /** Delivers one revision with retries. Returns false when it is still pending afterwards. */
  private async process(item: WorkItem): Promise<boolean> {
    let revision: PendingRevision;
    try {
      revision = item.kind === 'pending' ? item.revision : await this.signNew(item.due);
    } catch (error) {
      return this.handleFailure(
        item.kind === 'pending' ? item.revision.key : item.due.key,
        undefined,
        error,
        0,
      );
    }

    const ids = revisionIds(revision);
    let attempts = 0;
    try {
      const acceptance = await withRetry(
        { maxAttempts: this.config.maxRetries, baseDelayMs: this.config.retryDelayMs },
        {
          signal: this.abort.signal,
          onRetry: (error, attempt, delayMs) => {
            this.stats.retries += 1;
            this.logger.warn(
              { ...revisionIds(revision), attempt, retryInMs: delayMs, err: error.message },
              'delivery failed; retrying',
            );
          },
        },
        async () => {
          attempts += 1;
          this.throwIfStopping();
          revision = await this.refreshDeadline(revision);
          try {
            return await this.deps.submitter.deliver(revision, {
              signal: this.abort.signal,
              logger: this.logger.child(revisionIds(revision)),
              recordTransaction: (tx) => this.state.recordTransaction(revision.key, tx),
            });
          } catch (error) {
            revision = await this.repair(revision, error);
            throw error instanceof RejectedError
              ? new RetryableError(error.message, { cause: error })
              : error;
          }
        },
      );
      await this.markDone(revision, acceptance, attempts);
      return true;
    } catch (error) {
      if (this.stopping) {
        this.logger.info(
          ids,
          'stopping: the revision in flight is left for the next start to reconcile',
        );
        return false;
      }
      return this.handleFailure(revision.key, revision, error, attempts);
    }
  }

  /**
   * Repairs a rejection the daemon can fix itself. A passed deadline gets a fresh deadline
   * with the same nonce; a nonce that another attestation overtook gets a new nonce. Both
   * are safe: the old signature can no longer be accepted. Any other error is rethrown.
   */
  private async repair(revision: PendingRevision, error: unknown): Promise<PendingRevision> {
    if (!(error instanceof RejectedError)) return revision;
    if (error.reason === 'deadline-passed') {
      this.logger.warn(
        { ...revisionIds(revision), err: error.message },
        'deadline passed; signing again with a fresh deadline and the same nonce',
      );
      return this.resign(revision, BigInt(revision.attestation.nonce ?? '0'));
    }
    if (error.reason === 'nonce-used') {
      const nonce = await this.deps.nonces.next(revision.user);
      this.logger.warn(
        { ...revisionIds(revision), newNonce: nonce.toString(), err: error.message },
        'nonce overtaken by another attestation; signing again with a new nonce',
      );
      return this.resign(revision, nonce);
    }
    throw error;
  }

  /** Signs the same revision again before its deadline gets close, as long as nothing of it is in flight. */
  private async refreshDeadline(revision: PendingRevision): Promise<PendingRevision> {
    if (revision.tx !== undefined) return revision;
    const now = await this.deps.submitter.currentTime();
    const margin = BigInt(Math.max(60, Math.floor(this.config.deadlineBufferSec / 10)));
    const deadline = BigInt(revision.attestation.deadline ?? '0');
    if (deadline - now > margin) return revision;
    this.logger.warn(
      { ...revisionIds(revision), deadline: deadline.toString(), now: now.toString() },
      deadline < now
        ? 'deadline passed; signing again with a fresh deadline and the same nonce'
        : 'deadline close; signing again with a fresh deadline and the same nonce',
    );
    return this.resign(revision, BigInt(revision.attestation.nonce ?? '0'), now);
  }

  private async signNew(due: DueRevision): Promise<PendingRevision> {
    const nonce = await this.deps.nonces.next(due.log.agent);
    const revision = await this.sign(
      {
        key: due.key,
        user: due.log.agent,
        jobId: due.log.jobId.toString(),
        lastUpdatedMs: due.log.lastUpdatedMs,
        fingerprint: due.fingerprint,
      },
      due.figures,
      nonce,
    );
    this.due.delete(due.key);
    return revision;
  }

  private resign(revision: PendingRevision, nonce: bigint, now?: bigint): Promise<PendingRevision> {
    const attestation = attestationFromJson(revision.attestation);
    return this.sign(revision, attestation, nonce, now);
  }

  /**
   * Signs a revision with a nonce and records it durably before anything is sent. Refuses
   * when another revision has already taken the user's nonce: two signatures for one nonce
   * could pay for the wrong job.
   */
  private async sign(
    ids: Pick<PendingRevision, 'key' | 'user' | 'jobId' | 'lastUpdatedMs' | 'fingerprint'>,
    figures: AttestationFigures,
    nonce: bigint,
    now?: bigint,
  ): Promise<PendingRevision> {
    const holder = this.state.nonceHolder(ids.user, nonce.toString());
    if (
      holder !== undefined &&
      (holder.key !== ids.key || holder.lastUpdatedMs !== ids.lastUpdatedMs)
    ) {
      this.logger.error(
        {
          agent: ids.user,
          nonce: nonce.toString(),
          holder: revisionIds(holder),
          revision: { jobId: ids.jobId, lastUpdatedMs: ids.lastUpdatedMs },
        },
        'refusing to sign: another revision already holds this nonce',
      );
      throw new RetryableError(`nonce ${nonce} of ${ids.user} is held by job ${holder.jobId}`);
    }

    const signer = this.requireSigner();
    const time = now ?? (await this.deps.submitter.currentTime());
    const attestation: Attestation = {
      ...figures,
      nonce,
      deadline: time + BigInt(this.config.deadlineBufferSec),
    };
    const { signature, digest } = signer.sign(attestation);
    await this.state.recordSigned({
      ...ids,
      attestation: attestationToJson(attestation),
      signature,
      digest,
      idempotencyKey: idempotencyKey(signer.domain, ids, nonce),
      signedAtMs: Date.now(),
    });
    const recorded = this.state.pendingFor(ids.key);
    if (recorded === undefined)
      throw new Error(`signed revision ${ids.key} is missing from the state`);
    return recorded;
  }

  private async markDone(
    revision: PendingRevision,
    acceptance: Acceptance,
    attempts: number,
  ): Promise<void> {
    await this.state.recordDone(revision.key, {
      lastUpdatedMs: revision.lastUpdatedMs,
      fingerprint: revision.fingerprint,
      nonce: revision.attestation.nonce ?? '0',
      reference: acceptance.reference,
    });
    this.backoff.delete(revision.key);
    const current = this.due.get(revision.key);
    if (current !== undefined && current.log.lastUpdatedMs <= revision.lastUpdatedMs)
      this.due.delete(revision.key);

    this.stats.accepted += 1;
    this.logger.info(
      {
        ...revisionIds(revision),
        epochId: revision.attestation.epochId,
        attempts,
        reference: acceptance.reference,
        ...acceptance.details,
      },
      'attestation accepted',
    );
  }

  private async handleFailure(
    key: string,
    revision: PendingRevision | undefined,
    error: unknown,
    attempts: number,
  ): Promise<false> {
    const previous = this.backoff.get(key);
    const failures = (previous?.failures ?? 0) + 1;
    const delayMs = Math.min(
      backoffDelayMs(
        { maxAttempts: 0, baseDelayMs: this.config.retryDelayMs },
        this.config.maxRetries + failures - 1,
      ),
      MAX_CYCLE_BACKOFF_MS,
    );
    this.backoff.set(key, { failures, nextAttemptAtMs: Date.now() + delayMs });

    const cause =
      error instanceof RetryableError && error.cause instanceof RejectedError ? error.cause : error;
    const message = describeError(cause);
    if (cause instanceof RejectedError) this.stats.recordRejection(cause.reason);
    else this.stats.failed += 1;

    const fields = {
      ...(revision ? revisionIds(revision) : { key }),
      attempts,
      failures,
      retryInMs: delayMs,
      err: message,
    };
    if (cause instanceof RejectedError) {
      this.logger.error(
        { ...fields, reason: cause.reason },
        'attestation rejected; it stays pending and is tried again later',
      );
    } else {
      this.logger.error(
        fields,
        'delivery failed after all attempts; it stays pending and is tried again later',
      );
    }

    if (revision !== undefined) {
      try {
        await this.state.recordFailure(key, failures, message);
      } catch (stateError) {
        this.logger.error(
          { key, err: describeError(stateError) },
          'could not record the failure in the state file',
        );
      }
    }
    return false;
  }

  private async checkSigner(): Promise<void> {
    const authorised = await this.deps.submitter.signerAuthorised();
    this.stats.signerAuthorised = authorised;
    if (authorised === false) {
      this.logger.error(
        { signer: this.deps.wallet.address },
        'the signer is not authorised on the oracle; attestations will be rejected until governance calls setSigner for it',
      );
    }
  }

  private onFilesChanged(): void {
    this.changedSinceCycle = true;
    if (this.wakeTimer !== undefined) return;
    this.wakeTimer = setTimeout(() => {
      this.wakeTimer = undefined;
      this.wake?.();
    }, WATCH_DEBOUNCE_MS);
  }

  private async waitForNextCycle(): Promise<void> {
    if (this.changedSinceCycle || this.stopping) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, this.config.pollIntervalMs);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.wake = undefined;
  }

  private async pause(ms: number): Promise<void> {
    try {
      await sleep(ms, undefined, { signal: this.abort.signal });
    } catch {
      // Stop requested.
    }
  }

  private throwIfStopping(): void {
    if (this.stopping) throw new StopRequestedError();
  }

  private requireSigner(): AttestationSigner {
    if (this.signer === undefined) throw new RetryableError('not connected to the target yet');
    return this.signer;
  }
}

function revisionIds(revision: PendingRevision): Record<string, string> {
  return {
    agent: revision.user,
    jobId: revision.jobId,
    nonce: revision.attestation.nonce ?? '?',
    lastUpdated: new Date(revision.lastUpdatedMs).toISOString(),
  };
}

/**
 * Derives the API's Idempotency-Key: the same for every try of one revision with one nonce, and
 * different for any other revision, target or nonce.
 */
function idempotencyKey(
  domain: TypedDataDomain,
  ids: Pick<PendingRevision, 'user' | 'jobId' | 'lastUpdatedMs'>,
  nonce: bigint,
): string {
  const text = [
    domain.chainId,
    domain.verifyingContract,
    ids.user,
    ids.jobId,
    ids.lastUpdatedMs,
    nonce,
  ].join(':');
  return createHash('sha256').update(text).digest('hex');
}

function rank(item: WorkItem): number {
  return item.kind === 'pending' ? 0 : 1;
}

function groupByUser(items: WorkItem[]): WorkItem[][] {
  const lanes = new Map<string, WorkItem[]>();
  for (const item of items) {
    const user = item.kind === 'pending' ? item.revision.user : item.due.log.agent;
    const lane = lanes.get(user) ?? [];
    lane.push(item);
    lanes.set(user, lane);
  }
  return [...lanes.values()];
}

async function runWithConcurrency<T>(
  items: T[],
  limit: number,
  work: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next];
      next += 1;
      if (item !== undefined) await work(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** How often a backlog's progress is logged while it drains. */
const PROGRESS_INTERVAL_MS = 10_000;

/**
 * Logs a draining backlog's progress (done of total, rate, time left) at a steady interval
 * instead of once per attestation.
 */
class BacklogProgress {
  private startedAtMs = 0;
  private total = 0;
  private done = 0;
  private lastLogAtMs = 0;

  update(remaining: number, acceptedThisCycle: number, logger: Logger): void {
    const now = Date.now();
    if (remaining === 0) {
      if (this.total > 0 && this.done > 0 && now - this.startedAtMs >= PROGRESS_INTERVAL_MS) {
        logger.info(
          { done: this.done, seconds: Math.round((now - this.startedAtMs) / 1000) },
          'backlog drained',
        );
      }
      this.total = 0;
      this.done = 0;
      return;
    }
    if (this.total === 0) {
      this.startedAtMs = now;
      this.lastLogAtMs = now;
    }
    this.done += acceptedThisCycle;
    this.total = this.done + remaining;
    if (now - this.lastLogAtMs < PROGRESS_INTERVAL_MS) return;

    this.lastLogAtMs = now;
    const ratePerSec = this.done / Math.max((now - this.startedAtMs) / 1000, 0.001);
    const secondsLeft = ratePerSec > 0 ? Math.round(remaining / ratePerSec) : undefined;
    logger.info(
      {
        done: this.done,
        total: this.total,
        ratePerSec: Number(ratePerSec.toFixed(2)),
        secondsLeft,
      },
      'backlog progress',
    );
  }
}
