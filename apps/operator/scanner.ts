import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import type { ParseOutcome, Skip } from './energy-log';
import { parseEnergyLog } from './energy-log';

/**
 * Finds new and changed log files under `<root>/<agentDir>/<jobId>.json` and parses them.
 *
 * Each file is remembered by its size, modification time, change time and inode, so an
 * unchanged file is never opened twice. With watching on, a cycle lists and stats only the
 * agent folders that reported a change since the last cycle. Every `statWalkEvery` cycles
 * all folders are listed and every file stated, and so are folders that cannot be watched
 * in every cycle.
 * Every `fullScanEvery` cycles all files are read again, for file systems whose timestamps
 * cannot be trusted.
 */

export interface ScannedFile {
  file: string;
  agentDir: string;
  outcome: ParseOutcome;
  /** False when the same skip was already reported for this content. */
  report: boolean;
}

export interface ScanResult {
  /** New or changed files, and transient failures; empty when `scan` was given a callback. */
  changed: ScannedFile[];
  /** Problems with the tree itself (not with one log), each reported once. */
  problems: Array<{ path: string; reason: string }>;
  filesSeen: number;
  filesRead: number;
  fullScan: boolean;
}

export interface ScannerOptions {
  maxFileBytes: number;
  fullScanEvery: number;
  /** With watching on, every this many cycles every folder is listed anyway. Default 30. */
  statWalkEvery?: number | undefined;
  shard?: { index: number; count: number } | undefined;
}

interface FileRecord {
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  ino: number;
  generation: number;
  /** Read again next cycle even when unchanged: the last read hit a half-written file. */
  retry: boolean;
  reportedSkip: string | undefined;
}

interface FolderRecord {
  files: Map<string, FileRecord>;
  watcher: fs.FSWatcher | undefined;
  /** Set by the watcher; cleared when the folder is listed. */
  dirty: boolean;
  /** Folders with a transient failure are listed every cycle until it clears. */
  retries: number;
}

/** How many directory entries are handled between two yields to the event loop. */
const ENTRIES_PER_SLICE = 2000;
/** With watching on, a full listing every 30 cycles (5 minutes at the default interval) catches a missed event. */
const DEFAULT_STAT_WALK_EVERY = 30;

export class LogScanner {
  private readonly folders = new Map<string, FolderRecord>();
  private readonly reportedProblems = new Set<string>();
  private generation = 0;
  private cycles = 0;
  private rootWatcher: fs.FSWatcher | undefined;
  private rootDirty = true;
  private onChange: (() => void) | undefined;

  constructor(
    readonly root: string,
    private readonly options: ScannerOptions,
  ) {}

  /** Calls `onChange` whenever something under the root may have changed, and lets cycles skip quiet folders. */
  watch(onChange: () => void): void {
    this.onChange = onChange;
    this.watchRoot();
    for (const [folder, record] of this.folders) this.watchFolder(folder, record);
  }

  close(): void {
    this.rootWatcher?.close();
    this.rootWatcher = undefined;
    for (const record of this.folders.values()) {
      record.watcher?.close();
      record.watcher = undefined;
    }
    this.onChange = undefined;
  }

  /** Makes the next scan read this file again even if it looks unchanged. */
  forget(file: string): void {
    const record = this.folders.get(path.dirname(file));
    record?.files.delete(path.basename(file));
    if (record !== undefined) record.dirty = true;
  }

  /**
   * Scans the tree. With `onFile`, each new or changed file is handed over as soon as it is
   * parsed and not kept, so memory stays flat on a first scan of a large tree.
   */
  async scan(nowMs: number, onFile?: (scanned: ScannedFile) => void): Promise<ScanResult> {
    this.generation += 1;
    this.cycles += 1;
    const fullScan = this.cycles % this.options.fullScanEvery === 0;
    const statWalk =
      fullScan ||
      this.onChange === undefined ||
      this.cycles % (this.options.statWalkEvery ?? DEFAULT_STAT_WALK_EVERY) === 0;
    const result: ScanResult = { changed: [], problems: [], filesSeen: 0, filesRead: 0, fullScan };
    const deliver = onFile ?? ((scanned: ScannedFile) => result.changed.push(scanned));

    const rootProblem = checkFolder(this.root);
    if (rootProblem !== undefined) {
      this.problemOnce(result, this.root, rootProblem);
      this.rootDirty = true;
      return result;
    }
    for (const key of this.reportedProblems) {
      if (key.startsWith(`${this.root}|`)) this.reportedProblems.delete(key);
    }
    if (this.onChange !== undefined && this.rootWatcher === undefined) this.watchRoot();

    const agentFolders =
      statWalk || this.rootDirty ? this.listAgentFolders(result) : [...this.folders.keys()];
    this.rootDirty = false;

    let handled = 0;
    for (const folder of agentFolders) {
      const record = this.folderRecord(folder);
      const quiet = !record.dirty && record.retries === 0 && record.watcher !== undefined;
      if (quiet && !statWalk) {
        result.filesSeen += record.files.size;
        continue;
      }
      record.dirty = false;
      handled += await this.scanAgentFolder(folder, record, nowMs, fullScan, result, deliver);
      if (handled >= ENTRIES_PER_SLICE) {
        handled = 0;
        await yieldToEventLoop();
      }
    }

    if (statWalk) this.forgetVanishedFolders(new Set(agentFolders));
    return result;
  }

  private listAgentFolders(result: ScanResult): string[] {
    const folders: string[] = [];
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
      if (this.inShard(entry.name)) folders.push(entryPath);
    }
    return folders;
  }

  private folderRecord(folder: string): FolderRecord {
    let record = this.folders.get(folder);
    if (record === undefined) {
      record = { files: new Map(), watcher: undefined, dirty: true, retries: 0 };
      this.folders.set(folder, record);
      if (this.onChange !== undefined) this.watchFolder(folder, record);
    }
    return record;
  }

  private forgetVanishedFolders(present: Set<string>): void {
    for (const [folder, record] of this.folders) {
      if (present.has(folder)) continue;
      record.watcher?.close();
      this.folders.delete(folder);
    }
  }

  private async scanAgentFolder(
    folder: string,
    record: FolderRecord,
    nowMs: number,
    fullScan: boolean,
    result: ScanResult,
    deliver: (scanned: ScannedFile) => void,
  ): Promise<number> {
    const agentDir = path.basename(folder);
    const entries = readFolder(folder);
    let handled = 0;
    let retries = 0;

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

      const known = record.files.get(entry.name);
      if (known !== undefined) known.generation = this.generation;
      if (known !== undefined && sameFile(known, stats) && !known.retry && !fullScan) continue;

      const scanned = this.readLog(file, agentDir, entry.name, stats, nowMs);
      if (scanned === undefined) continue;
      result.filesRead += 1;
      const remembered = this.remember(record, entry.name, scanned, known);
      if (remembered.retry) retries += 1;
      deliver(scanned.scanned);
    }

    for (const [name, file] of record.files) {
      if (file.generation !== this.generation) record.files.delete(name);
    }
    record.retries = retries;
    return handled;
  }

  private readLog(
    file: string,
    agentDir: string,
    fileName: string,
    stats: fs.Stats,
    nowMs: number,
  ): { scanned: ScannedFile; stats: fs.Stats } | undefined {
    const location = { agentDir, fileName };
    const skipped = (skip: Skip, seen: fs.Stats) => ({
      scanned: { file, agentDir, outcome: { ok: false as const, skip }, report: true },
      stats: seen,
    });

    if (stats.size > this.options.maxFileBytes) {
      return skipped(
        {
          code: 'too-large',
          reason: `the file has ${stats.size} bytes, more than TELEMETRY_MAX_FILE_BYTES (${this.options.maxFileBytes})`,
          transient: false,
        },
        stats,
      );
    }

    let read: { text: string; stats: fs.Stats; changing: boolean };
    try {
      read = readStable(file);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return undefined;
      return skipped(
        {
          code: 'invalid-json',
          reason: `the file cannot be read (${code ?? (error as Error).message})`,
          transient: code !== 'EACCES' && code !== 'EPERM',
        },
        stats,
      );
    }

    if (read.changing) {
      return skipped(
        {
          code: 'invalid-json',
          reason: 'the file changed while it was being read',
          transient: true,
        },
        read.stats,
      );
    }
    const outcome = parseEnergyLog(location, read.text, nowMs);
    return { scanned: { file, agentDir, outcome, report: true }, stats: read.stats };
  }

  private remember(
    record: FolderRecord,
    name: string,
    read: { scanned: ScannedFile; stats: fs.Stats },
    known: FileRecord | undefined,
  ): FileRecord {
    const { outcome } = read.scanned;
    const { stats } = read;
    const skipKey = outcome.ok
      ? undefined
      : `${stats.size}:${stats.mtimeMs}:${stats.ino}|${outcome.skip.reason}`;
    read.scanned.report = skipKey !== undefined && skipKey !== known?.reportedSkip;
    const file: FileRecord = {
      size: stats.size,
      mtimeMs: stats.mtimeMs,
      ctimeMs: stats.ctimeMs,
      ino: stats.ino,
      generation: this.generation,
      retry: !outcome.ok && outcome.skip.transient,
      reportedSkip: skipKey,
    };
    record.files.set(name, file);
    return file;
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

  private watchRoot(): void {
    try {
      const watcher = fs.watch(this.root, { persistent: false }, () => {
        this.rootDirty = true;
        this.onChange?.();
      });
      watcher.on('error', () => {
        watcher.close();
        this.rootWatcher = undefined;
        this.rootDirty = true;
      });
      this.rootWatcher = watcher;
    } catch {
      // Without a root watch, new agent folders are found by the periodic listing.
      this.rootWatcher = undefined;
    }
  }

  /**
   * Watches one agent folder. A folder without a working watch (too many watches, a file
   * system without notifications) is listed every cycle instead.
   */
  private watchFolder(folder: string, record: FolderRecord): void {
    try {
      const watcher = fs.watch(folder, { persistent: false }, () => {
        record.dirty = true;
        this.onChange?.();
      });
      watcher.on('error', () => {
        watcher.close();
        record.watcher = undefined;
        record.dirty = true;
      });
      record.watcher = watcher;
    } catch {
      record.watcher = undefined;
    }
  }
}

/** Returns the shard (0 to count - 1) of an agent folder, the same on every host and after restarts. */
export function shardOf(agentDir: string, count: number): number {
  const digest = createHash('sha256').update(agentDir.toLowerCase()).digest();
  return digest.readUInt32BE(0) % count;
}

function sameFile(known: FileRecord, stats: fs.Stats): boolean {
  return (
    known.size === stats.size &&
    known.mtimeMs === stats.mtimeMs &&
    known.ctimeMs === stats.ctimeMs &&
    known.ino === stats.ino
  );
}

/**
 * Reads a file and checks that it did not change while being read. The orchestrator
 * rewrites logs in place, so a read can catch a file half-way through a rewrite.
 */
function readStable(file: string): { text: string; stats: fs.Stats; changing: boolean } {
  const descriptor = fs.openSync(file, 'r');
  try {
    const before = fs.fstatSync(descriptor);
    const text = fs.readFileSync(descriptor, 'utf8');
    const after = fs.fstatSync(descriptor);
    const changing = before.size !== after.size || before.mtimeMs !== after.mtimeMs;
    return { text, stats: after, changing };
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
