import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { StateError } from './errors';
import { StateLock } from './state-lock';

/**
 * The state file: an append-only journal of JSON lines.
 *
 * Line 1 is a header with the format name and version. Every later line is one record:
 * `sign` (a revision was given a nonce and signed: written before it is sent), `tx` (the
 * hash of the transaction that carries it, written before the broadcast), `done` (accepted),
 * `failure` (the last failed attempt, for `status`) and `nonce` (a user's last nonce).
 * Appending keeps the bytes written per attestation independent of how many jobs the file
 * holds; when dead records pile up the file is rewritten (compacted) atomically.
 */

export const STATE_FORMAT = 'operator-telemetry-state';
export const STATE_VERSION = 1;

/** The last accepted revision of a job. */
export interface DoneJob {
  lastUpdatedMs: number;
  fingerprint: string;
  nonce: string;
  /** Transaction hash or API id. */
  reference?: string | undefined;
}

/** A revision that was signed and may be on its way: the write-ahead record. */
export interface SignedRevision {
  /** `<user>:<jobId>`. */
  key: string;
  user: string;
  jobId: string;
  lastUpdatedMs: number;
  fingerprint: string;
  /** Every struct field as a decimal string. */
  attestation: Record<string, string>;
  signature: string;
  digest: string;
  idempotencyKey: string;
  signedAtMs: number;
}

export interface TransactionRecord {
  txHash: string;
  rawTx: string;
  accountNonce: number;
}

export interface PendingRevision extends SignedRevision {
  /** The latest transaction that carries this revision's attestation. */
  tx?: TransactionRecord | undefined;
  /**
   * Every transaction sent for this revision and nonce, oldest first. Any of them may be the
   * one that gets mined, so all are looked for before the revision may take a new nonce.
   */
  txs: TransactionRecord[];
  failures: number;
  lastError?: string | undefined;
}

type JournalRecord =
  | { t: 'header'; format: string; version: number; createdAt: string }
  | ({ t: 'done'; key: string } & DoneJob)
  | { t: 'sign'; rev: SignedRevision }
  | ({ t: 'tx'; key: string } & TransactionRecord)
  | { t: 'failure'; key: string; failures: number; error: string }
  | { t: 'nonce'; user: string; nonce: string };

interface QueuedWrite {
  text: string;
  records: JournalRecord[];
  resolve: () => void;
  reject: (error: Error) => void;
}

/** Compaction starts once the file has this many more lines than live records. */
const COMPACT_SLACK_LINES = 10_000;

export function revisionKey(user: string, jobId: bigint | string): string {
  return `${user}:${jobId.toString()}`;
}

export class StateStore {
  private readonly doneJobs = new Map<string, DoneJob>();
  private readonly pendingRevisions = new Map<string, PendingRevision>();
  private readonly lastNonces = new Map<string, bigint>();
  private handle: fs.promises.FileHandle | undefined;
  private size = 0;
  private lineCount = 0;
  private queue: QueuedWrite[] = [];
  private flushing: Promise<void> | undefined;
  /** Bytes appended or rewritten since start; the benchmark reads it. */
  bytesWritten = 0;

  private constructor(
    readonly file: string,
    private readonly lock: StateLock | undefined,
    private readonly logger: Logger,
  ) {}

  /**
   * Takes ownership of the state file, loads it and rewrites it compacted. Throws a
   * StateError for a file that cannot be trusted, so that the daemon never starts from
   * nothing and sends every job again.
   */
  static async open(file: string, logger: Logger): Promise<StateStore> {
    try {
      fs.mkdirSync(path.dirname(file), { recursive: true });
    } catch (error) {
      throw new StateError(
        `cannot create the folder of the state file ${file}: ${(error as Error).message}; check TELEMETRY_STATE_FILE`,
      );
    }
    const lock = StateLock.acquire(file);
    try {
      const store = new StateStore(file, lock, logger);
      const loaded = store.load();
      if (loaded === undefined || store.isBloated()) await store.compact();
      else await store.openForAppend(loaded.validBytes);
      return store;
    } catch (error) {
      lock.release();
      throw error;
    }
  }

  /**
   * Loads a state file without taking ownership, for `status` and `--dry-run` while a
   * daemon may be running. Nothing is written.
   */
  static readOnly(file: string, logger: Logger): StateStore {
    const store = new StateStore(file, undefined, logger);
    store.load();
    return store;
  }

  /** Every journal line about one job still in the file (compaction keeps only the latest). */
  static history(file: string, key: string): Array<Record<string, unknown>> {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch {
      return [];
    }
    const records: Array<Record<string, unknown>> = [];
    for (const line of text.split('\n')) {
      if (!line.includes(key)) continue;
      try {
        const record = JSON.parse(line) as Record<string, unknown>;
        const rev = record.rev as { key?: string } | undefined;
        if (record.key === key || rev?.key === key) records.push(record);
      } catch {
        // A torn last line; `open` reports it.
      }
    }
    return records;
  }

  /** Iterates over every job's last accepted revision. */
  doneJobsEntries(): IterableIterator<[string, DoneJob]> {
    return this.doneJobs.entries();
  }

  /** Iterates over every user's last nonce. */
  nonceEntries(): IterableIterator<[string, bigint]> {
    return this.lastNonces.entries();
  }

  /** Stores the time of the last finished cycle in the lock file, where `status` reads it. */
  noteCycle(atMs: number): void {
    this.lock?.noteCycle(atMs);
  }

  done(key: string): DoneJob | undefined {
    return this.doneJobs.get(key);
  }

  /** True while the state records nothing at all: no job done, no revision signed. */
  isEmpty(): boolean {
    return (
      this.doneJobs.size === 0 && this.pendingRevisions.size === 0 && this.lastNonces.size === 0
    );
  }

  doneCount(): number {
    return this.doneJobs.size;
  }

  pending(): PendingRevision[] {
    return [...this.pendingRevisions.values()];
  }

  pendingFor(key: string): PendingRevision | undefined {
    return this.pendingRevisions.get(key);
  }

  /** Returns the highest nonce this daemon assigned or saw accepted for the user; 0 when none. */
  lastNonce(user: string): bigint {
    return this.lastNonces.get(user) ?? 0n;
  }

  /** Returns the pending revision that has taken the user's nonce, if any. */
  nonceHolder(user: string, nonce: string): PendingRevision | undefined {
    for (const revision of this.pendingRevisions.values()) {
      if (revision.user === user && revision.attestation.nonce === nonce) return revision;
    }
    return undefined;
  }

  async recordSigned(revision: SignedRevision): Promise<void> {
    await this.append([{ t: 'sign', rev: revision }]);
  }

  async recordTransaction(key: string, tx: TransactionRecord): Promise<void> {
    await this.append([{ t: 'tx', key, ...tx }]);
  }

  async recordDone(key: string, done: DoneJob): Promise<void> {
    await this.append([{ t: 'done', key, ...done }]);
  }

  async recordFailure(key: string, failures: number, error: string): Promise<void> {
    await this.append([{ t: 'failure', key, failures, error }]);
  }

  /** Waits for queued writes, closes the file and releases the lock. */
  async close(): Promise<void> {
    while (this.flushing !== undefined) await this.flushing;
    await this.handle?.close();
    this.handle = undefined;
    this.lock?.release();
  }

  /** Loads the journal. Returns undefined when there is no file yet or its tail was torn. */
  private load(): { validBytes: number } | undefined {
    let text: string;
    try {
      text = fs.readFileSync(this.file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new StateError(
        `the state file ${this.file} cannot be read: ${(error as Error).message}`,
      );
    }

    const lines = text.split('\n');
    const tornTail = lines.pop();
    if (tornTail !== undefined && tornTail !== '') {
      // An append cut short by a crash. Its record was never fully written, so the
      // attestation it announced was never sent: dropping it loses nothing.
      this.logger.warn(
        { file: this.file },
        'state file ends with an incomplete record from a crash; ignoring it',
      );
    }
    if (lines.length === 0) {
      throw new StateError(
        `the state file ${this.file} is empty or incomplete; restore it from a backup, or delete it ` +
          'only if no attestation was ever sent with it (the daemon would send every job again)',
      );
    }

    lines.forEach((line, index) => this.applyLine(line, index + 1));
    this.lineCount = lines.length;
    const torn = tornTail !== undefined && tornTail !== '';
    return torn ? undefined : { validBytes: Buffer.byteLength(text) };
  }

  private async openForAppend(validBytes: number): Promise<void> {
    this.handle = await fs.promises.open(this.file, 'a', 0o600);
    // A file created by an older version or by hand may be readable by others.
    await this.handle.chmod(0o600);
    this.size = validBytes;
  }

  private isBloated(): boolean {
    const live = 1 + this.lastNonces.size + this.doneJobs.size + 3 * this.pendingRevisions.size;
    return this.lineCount >= 2 * live + COMPACT_SLACK_LINES;
  }

  private applyLine(line: string, lineNumber: number): void {
    let record: JournalRecord;
    try {
      record = JSON.parse(line) as JournalRecord;
    } catch {
      throw new StateError(
        `the state file ${this.file} is corrupt at line ${lineNumber} (not JSON); restore it from a backup ` +
          'or repair that line; the daemon does not start without its state, to avoid sending jobs twice',
      );
    }

    if (lineNumber === 1) {
      this.checkHeader(record);
      return;
    }
    if (!isJournalRecord(record)) {
      throw new StateError(
        `the state file ${this.file} is corrupt at line ${lineNumber} (not a known record); restore it from a backup ` +
          'or repair that line; the daemon does not start without its state, to avoid sending jobs twice',
      );
    }
    this.apply(record);
  }

  private checkHeader(record: JournalRecord): void {
    if (
      typeof record !== 'object' ||
      record === null ||
      record.t !== 'header' ||
      record.format !== STATE_FORMAT
    ) {
      throw new StateError(
        `${this.file} is not an operator-telemetry state file (no header line); point TELEMETRY_STATE_FILE at the right file`,
      );
    }
    if (record.version !== STATE_VERSION) {
      throw new StateError(
        `the state file ${this.file} has format version ${record.version}, but this daemon reads version ${STATE_VERSION}; ` +
          'run the daemon version that wrote it, or a newer one',
      );
    }
  }

  private apply(record: JournalRecord): void {
    switch (record.t) {
      case 'sign': {
        // A repeat signature of the same revision and nonce (a fresh deadline) keeps the
        // transaction already sent: it may still be mined and must still be looked for.
        const previous = this.pendingRevisions.get(record.rev.key);
        const sameNonce =
          previous !== undefined &&
          previous.lastUpdatedMs === record.rev.lastUpdatedMs &&
          previous.attestation.nonce === record.rev.attestation.nonce;
        this.pendingRevisions.set(record.rev.key, {
          ...record.rev,
          tx: sameNonce ? previous.tx : undefined,
          txs: sameNonce ? previous.txs : [],
          failures: previous?.failures ?? 0,
          lastError: previous?.lastError,
        });
        this.raiseNonce(record.rev.user, BigInt(record.rev.attestation.nonce ?? '0'));
        break;
      }
      case 'tx': {
        const pending = this.pendingRevisions.get(record.key);
        if (pending !== undefined) {
          const tx = {
            txHash: record.txHash,
            rawTx: record.rawTx,
            accountNonce: record.accountNonce,
          };
          pending.tx = tx;
          if (!pending.txs.some((known) => known.txHash === tx.txHash)) pending.txs.push(tx);
        }
        break;
      }
      case 'done': {
        const { t: _t, key, ...done } = record;
        this.doneJobs.set(key, done);
        const pending = this.pendingRevisions.get(key);
        if (pending !== undefined && pending.lastUpdatedMs <= done.lastUpdatedMs)
          this.pendingRevisions.delete(key);
        this.raiseNonce(key.slice(0, key.indexOf(':')), BigInt(done.nonce));
        break;
      }
      case 'failure': {
        const pending = this.pendingRevisions.get(record.key);
        if (pending !== undefined) {
          pending.failures = record.failures;
          pending.lastError = record.error;
        }
        break;
      }
      case 'nonce':
        this.raiseNonce(record.user, BigInt(record.nonce));
        break;
      case 'header':
        break;
    }
  }

  private raiseNonce(user: string, nonce: bigint): void {
    if (nonce > (this.lastNonces.get(user) ?? 0n)) this.lastNonces.set(user, nonce);
  }

  private liveRecords(): JournalRecord[] {
    const records: JournalRecord[] = [
      {
        t: 'header',
        format: STATE_FORMAT,
        version: STATE_VERSION,
        createdAt: new Date().toISOString(),
      },
    ];
    for (const [user, nonce] of this.lastNonces)
      records.push({ t: 'nonce', user, nonce: nonce.toString() });
    for (const [key, done] of this.doneJobs) records.push({ t: 'done', key, ...done });
    for (const pending of this.pendingRevisions.values()) {
      const { tx: _latest, txs, failures, lastError, ...signed } = pending;
      records.push({ t: 'sign', rev: signed });
      for (const tx of txs) records.push({ t: 'tx', key: pending.key, ...tx });
      if (lastError !== undefined)
        records.push({ t: 'failure', key: pending.key, failures, error: lastError });
    }
    return records;
  }

  /** Rewrites the file with only live records: temporary file, fsync, rename, fsync of the folder. */
  private async compact(): Promise<void> {
    const records = this.liveRecords();
    const text = records.map((record) => `${JSON.stringify(record)}\n`).join('');
    const temporary = `${this.file}.${process.pid}.tmp`;

    await this.handle?.close();
    this.handle = undefined;

    const handle = await fs.promises.open(temporary, 'w', 0o600);
    try {
      await handle.writeFile(text);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.promises.rename(temporary, this.file);
    await syncFolder(path.dirname(this.file));

    this.handle = await fs.promises.open(this.file, 'a', 0o600);
    this.size = Buffer.byteLength(text);
    this.lineCount = records.length;
    this.bytesWritten += this.size;
  }

  private append(records: JournalRecord[]): Promise<void> {
    const text = records.map((record) => `${JSON.stringify(record)}\n`).join('');
    return new Promise((resolve, reject) => {
      this.queue.push({ text, records, resolve, reject });
      this.startFlushing();
    });
  }

  private startFlushing(): void {
    if (this.flushing !== undefined) return;
    this.flushing = this.flush().finally(() => {
      this.flushing = undefined;
      if (this.queue.length > 0) this.startFlushing();
    });
  }

  /**
   * Writes every queued record with one write and one fsync (group commit). Records reach
   * memory only after they are on disk, so the daemon never acts on a state it could lose.
   */
  private async flush(): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0);
      const text = batch.map((write) => write.text).join('');
      const handle = this.handle;
      try {
        if (handle === undefined) throw new StateError(`the state file ${this.file} is closed`);
        await writeAll(handle, Buffer.from(text));
        await handle.datasync();
      } catch (error) {
        await this.undoPartialWrite();
        const failure = new StateError(
          `writing the state file ${this.file} failed: ${(error as Error).message}`,
          {
            cause: error,
          },
        );
        batch.forEach((write) => write.reject(failure));
        continue;
      }

      this.size += Buffer.byteLength(text);
      this.bytesWritten += Buffer.byteLength(text);
      for (const write of batch) {
        write.records.forEach((record) => this.apply(record));
        this.lineCount += write.records.length;
        write.resolve();
      }
      await this.compactIfBloated();
    }
  }

  /** Cuts a half-written append (a full disk) so that the next append starts on a clean line. */
  private async undoPartialWrite(): Promise<void> {
    try {
      await this.handle?.truncate(this.size);
    } catch (error) {
      this.logger.error(
        { err: error, file: this.file },
        'could not cut a failed append from the state file',
      );
    }
  }

  private async compactIfBloated(): Promise<void> {
    if (!this.isBloated()) return;
    try {
      await this.compact();
    } catch (error) {
      // The journal is still complete, only longer than it needs to be.
      this.logger.warn(
        { err: error, file: this.file },
        'compacting the state file failed; will try again later',
      );
      this.handle ??= await fs.promises.open(this.file, 'a', 0o600);
    }
  }
}

/** Checks the fields each record kind needs, so a damaged line is reported instead of crashing. */
function isJournalRecord(value: unknown): value is JournalRecord {
  if (typeof value !== 'object' || value === null) return false;
  const record = value as Record<string, unknown>;
  const isText = (field: unknown): boolean => typeof field === 'string';
  const isInteger = (field: unknown): boolean => typeof field === 'string' && /^\d+$/.test(field);
  switch (record.t) {
    case 'done':
      return (
        isText(record.key) && typeof record.lastUpdatedMs === 'number' && isInteger(record.nonce)
      );
    case 'sign': {
      const rev = record.rev as Record<string, unknown> | null | undefined;
      const attestation = rev?.attestation as Record<string, unknown> | null | undefined;
      return (
        typeof rev === 'object' &&
        rev !== null &&
        isText(rev.key) &&
        isText(rev.user) &&
        typeof rev.lastUpdatedMs === 'number' &&
        typeof attestation === 'object' &&
        attestation !== null &&
        isInteger(attestation.nonce)
      );
    }
    case 'tx':
      return isText(record.key) && isText(record.txHash) && isText(record.rawTx);
    case 'failure':
      return isText(record.key) && typeof record.failures === 'number';
    case 'nonce':
      return isText(record.user) && isInteger(record.nonce);
    default:
      return false;
  }
}

/**
 * Writes every byte. On a nearly full disk a write can succeed for only part of the buffer
 * and leave the rest for a later write to fail on, so a single write call is not enough.
 */
async function writeAll(handle: fs.promises.FileHandle, buffer: Buffer): Promise<void> {
  let offset = 0;
  while (offset < buffer.length) {
    const { bytesWritten } = await handle.write(buffer, offset, buffer.length - offset);
    if (bytesWritten === 0) throw new StateError('the disk accepted no more bytes');
    offset += bytesWritten;
  }
}

async function syncFolder(folder: string): Promise<void> {
  const handle = await fs.promises.open(folder, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
