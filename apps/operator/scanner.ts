import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import type { ParseOutcome, Skip } from './energy-log';
import { parseEnergyLog } from './energy-log';

/**
 * Finds new and changed log files under `<root>/<agentDir>/<jobId>.json` and parses them.
 *
 * Each file is remembered by its size, modification time, change time and inode. A cycle
 * over an unchanged tree lists the folders and stats each file, but opens none. Every
 * `fullScanEvery` cycles all files are read again anyway, for file systems whose
 * timestamps cannot be trusted.
 */

export interface ScannedFile {
  file: string;
  agentDir: string;
  outcome: ParseOutcome;
  /** False when the same skip was already reported for this content. */
  report: boolean;
}

export interface ScanResult {
  /** New or changed files, and files whose last read failed for a transient reason. */
  changed: ScannedFile[];
  /** Problems with the tree itself (not with one log), each reported once. */
  problems: Array<{ path: string; reason: string }>;
  filesSeen: number;
  fullScan: boolean;
}

export interface ScannerOptions {
  maxFileBytes: number;
  fullScanEvery: number;
  shard?: { index: number; count: number } | undefined;
}

interface FileRecord {
  signature: string;
  generation: number;
  /** Read again next cycle even when unchanged: the last read hit a half-written file. */
  retry: boolean;
  reportedSkip: string | undefined;
}

/** How many directory entries are handled between two yields to the event loop. */
const ENTRIES_PER_SLICE = 2000;

export class LogScanner {
  private readonly files = new Map<string, FileRecord>();
  private readonly reportedProblems = new Set<string>();
  private generation = 0;
  private cycles = 0;
  private watchers = new Map<string, fs.FSWatcher>();
  private onChange: (() => void) | undefined;

  constructor(
    readonly root: string,
    private readonly options: ScannerOptions,
  ) {}

  /** Calls `onChange` whenever something under the root may have changed. Best effort. */
  watch(onChange: () => void): void {
    this.onChange = onChange;
    this.watchFolder(this.root);
  }

  close(): void {
    for (const watcher of this.watchers.values()) watcher.close();
    this.watchers.clear();
    this.onChange = undefined;
  }

  /** Makes the next scan read this file again even if it looks unchanged. */
  forget(file: string): void {
    this.files.delete(file);
  }

  async scan(nowMs: number): Promise<ScanResult> {
    this.generation += 1;
    this.cycles += 1;
    const fullScan = this.cycles % this.options.fullScanEvery === 0;
    const result: ScanResult = { changed: [], problems: [], filesSeen: 0, fullScan };

    const rootProblem = checkFolder(this.root);
    if (rootProblem !== undefined) {
      this.problemOnce(result, this.root, rootProblem);
      return result;
    }
    for (const key of this.reportedProblems) {
      if (key.startsWith(`${this.root}|`)) this.reportedProblems.delete(key);
    }
    if (this.onChange !== undefined && !this.watchers.has(this.root)) this.watchFolder(this.root);

    let handled = 0;
    for (const entry of readFolder(this.root)) {
      const entryPath = path.join(this.root, entry.name);
      const kind = this.resolveKind(entry, entryPath);
      if (kind === 'file') {
        if (entry.name.endsWith('.json')) {
          this.problemOnce(
            result,
            entryPath,
            'a .json file directly in the log root is ignored; logs belong in <agentDir>/<jobId>.json',
          );
        }
        continue;
      }
      if (kind !== 'folder') {
        if (kind !== 'other') this.problemOnce(result, entryPath, kind);
        continue;
      }
      if (!this.inShard(entry.name)) continue;
      handled += await this.scanAgentFolder(entry.name, entryPath, nowMs, fullScan, result);
      if (handled >= ENTRIES_PER_SLICE) {
        handled = 0;
        await yieldToEventLoop();
      }
    }

    for (const [file, record] of this.files) {
      if (record.generation !== this.generation) this.files.delete(file);
    }
    return result;
  }

  private async scanAgentFolder(
    agentDir: string,
    folder: string,
    nowMs: number,
    fullScan: boolean,
    result: ScanResult,
  ): Promise<number> {
    if (this.onChange !== undefined && !this.watchers.has(folder)) this.watchFolder(folder);
    const entries = readFolder(folder);
    let handled = 0;

    for (const entry of entries) {
      handled += 1;
      if (handled % ENTRIES_PER_SLICE === 0) await yieldToEventLoop();
      if (!entry.name.endsWith('.json')) continue;

      const file = path.join(folder, entry.name);
      const kind = this.resolveKind(entry, file);
      if (kind === 'folder') {
        this.problemOnce(result, file, 'a folder named like a log file is ignored');
        continue;
      }
      if (kind !== 'file') {
        if (kind !== 'other') this.problemOnce(result, file, kind);
        continue;
      }

      let stats: fs.Stats;
      try {
        stats = fs.statSync(file);
      } catch {
        continue; // Deleted between listing and stat: nothing to attest.
      }
      result.filesSeen += 1;

      const signature = signatureOf(stats);
      const known = this.files.get(file);
      if (known !== undefined) known.generation = this.generation;
      if (known !== undefined && known.signature === signature && !known.retry && !fullScan)
        continue;

      const scanned = this.readLog(file, agentDir, entry.name, stats, nowMs);
      if (scanned === undefined) continue;
      this.remember(file, scanned, known);
      result.changed.push(scanned.scanned);
    }
    return handled;
  }

  private readLog(
    file: string,
    agentDir: string,
    fileName: string,
    stats: fs.Stats,
    nowMs: number,
  ): { scanned: ScannedFile; signature: string } | undefined {
    const location = { agentDir, fileName };
    if (stats.size > this.options.maxFileBytes) {
      const skip: Skip = {
        code: 'too-large',
        reason: `the file has ${stats.size} bytes, more than TELEMETRY_MAX_FILE_BYTES (${this.options.maxFileBytes})`,
        transient: false,
      };
      return {
        scanned: { file, agentDir, outcome: { ok: false, skip }, report: true },
        signature: signatureOf(stats),
      };
    }

    let read: { text: string; signature: string; changing: boolean };
    try {
      read = readStable(file);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return undefined;
      const skip: Skip = {
        code: 'invalid-json',
        reason: `the file cannot be read (${code ?? (error as Error).message})`,
        transient: code !== 'EACCES' && code !== 'EPERM',
      };
      return {
        scanned: { file, agentDir, outcome: { ok: false, skip }, report: true },
        signature: signatureOf(stats),
      };
    }

    if (read.changing) {
      const skip: Skip = {
        code: 'invalid-json',
        reason: 'the file changed while it was being read',
        transient: true,
      };
      return {
        scanned: { file, agentDir, outcome: { ok: false, skip }, report: true },
        signature: read.signature,
      };
    }
    const outcome = parseEnergyLog(location, read.text, nowMs);
    return { scanned: { file, agentDir, outcome, report: true }, signature: read.signature };
  }

  private remember(
    file: string,
    read: { scanned: ScannedFile; signature: string },
    known: FileRecord | undefined,
  ): void {
    const { outcome } = read.scanned;
    const skipKey = outcome.ok ? undefined : `${read.signature}|${outcome.skip.reason}`;
    read.scanned.report = skipKey !== undefined && skipKey !== known?.reportedSkip;
    this.files.set(file, {
      signature: read.signature,
      generation: this.generation,
      retry: !outcome.ok && outcome.skip.transient,
      reportedSkip: skipKey ?? undefined,
    });
  }

  /** Resolves symbolic links, which are followed only when they stay inside the log root. */
  private resolveKind(entry: fs.Dirent, entryPath: string): 'file' | 'folder' | 'other' | string {
    if (entry.isFile()) return 'file';
    if (entry.isDirectory()) return 'folder';
    if (!entry.isSymbolicLink()) return 'other';

    let target: string;
    try {
      target = fs.realpathSync(entryPath);
    } catch {
      return 'a symbolic link whose target does not exist is ignored';
    }
    const root = fs.realpathSync(this.root);
    if (target !== root && !target.startsWith(`${root}${path.sep}`)) {
      return `a symbolic link to ${target}, outside the log root, is ignored`;
    }
    const stats = fs.statSync(target);
    if (stats.isFile()) return 'file';
    if (stats.isDirectory()) return 'folder';
    return 'other';
  }

  private inShard(agentDir: string): boolean {
    const shard = this.options.shard;
    if (shard === undefined) return true;
    return shardOf(agentDir, shard.count) === shard.index;
  }

  private problemOnce(result: ScanResult, problemPath: string, reason: string): void {
    const key = `${problemPath}|${reason}`;
    if (this.reportedProblems.has(key)) return;
    this.reportedProblems.add(key);
    result.problems.push({ path: problemPath, reason });
  }

  private watchFolder(folder: string): void {
    try {
      const watcher = fs.watch(folder, { persistent: false }, () => this.onChange?.());
      watcher.on('error', () => {
        watcher.close();
        this.watchers.delete(folder);
      });
      this.watchers.set(folder, watcher);
    } catch {
      // Watching is only a shortcut; the polling cycle still finds every change.
    }
  }
}

/** The shard (0 to count - 1) an agent folder belongs to; stable across hosts and restarts. */
export function shardOf(agentDir: string, count: number): number {
  const digest = createHash('sha256').update(agentDir.toLowerCase()).digest();
  return digest.readUInt32BE(0) % count;
}

function signatureOf(stats: fs.Stats): string {
  return `${stats.size}:${stats.mtimeMs}:${stats.ctimeMs}:${stats.ino}`;
}

/**
 * Reads a file and checks that it did not change while being read. The orchestrator
 * rewrites logs in place, so a read can catch a file half-way through a rewrite.
 */
function readStable(file: string): { text: string; signature: string; changing: boolean } {
  const descriptor = fs.openSync(file, 'r');
  try {
    const before = fs.fstatSync(descriptor);
    const text = fs.readFileSync(descriptor, 'utf8');
    const after = fs.fstatSync(descriptor);
    const signature = signatureOf(after);
    return { text, signature, changing: signatureOf(before) !== signature };
  } finally {
    fs.closeSync(descriptor);
  }
}

function readFolder(folder: string): fs.Dirent[] {
  try {
    return fs.readdirSync(folder, { withFileTypes: true });
  } catch {
    return [];
  }
}

function checkFolder(folder: string): string | undefined {
  try {
    const stats = fs.statSync(folder);
    return stats.isDirectory()
      ? undefined
      : 'the log root ENERGY_LOG_DIR is not a folder; waiting for it to become one';
  } catch {
    return 'the log root ENERGY_LOG_DIR does not exist (yet); waiting for the orchestrator to create it';
  }
}
