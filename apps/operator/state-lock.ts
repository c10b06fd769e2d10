import fs from 'node:fs';
import os from 'node:os';
import { StateError, StateLockedError } from './errors';

/**
 * Single ownership of a state file: `<state file>.lock` records the owner's process id and
 * host. A lock whose process is gone (same host), or whose heartbeat is older than
 * STALE_AFTER_MS (another host sharing the volume), is taken over.
 */

export interface LockOwner {
  pid: number;
  hostname: string;
  startedAt: string;
  /** ISO time of the owner's last finished cycle. */
  lastCycleAt?: string | undefined;
}

const HEARTBEAT_MS = 10_000;
const STALE_AFTER_MS = 60_000;

export class StateLock {
  private heartbeat: NodeJS.Timeout | undefined;
  private lastCycleAt: string | undefined;

  private constructor(readonly lockFile: string) {}

  /** Takes the lock or throws a StateError naming the process that holds it. */
  static acquire(stateFile: string): StateLock {
    const lock = new StateLock(`${stateFile}.lock`);
    lock.take();
    lock.heartbeat = setInterval(() => lock.touch(), HEARTBEAT_MS);
    lock.heartbeat.unref();
    return lock;
  }

  release(): void {
    clearInterval(this.heartbeat);
    const owner = readOwner(this.lockFile);
    if (owner !== undefined && isSelf(owner)) fs.rmSync(this.lockFile, { force: true });
  }

  private take(): void {
    const me: LockOwner = {
      pid: process.pid,
      hostname: os.hostname(),
      startedAt: new Date().toISOString(),
    };
    try {
      fs.writeFileSync(this.lockFile, JSON.stringify(me), { flag: 'wx', mode: 0o600 });
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new StateError(
          `cannot create the lock file ${this.lockFile}: ${(error as Error).message}`,
        );
      }
    }

    const owner = readOwner(this.lockFile);
    if (owner !== undefined && isAlive(owner, this.lockFile)) {
      throw new StateLockedError(
        `the state file is in use by process ${owner.pid} on ${owner.hostname} (lock ${this.lockFile}); ` +
          'only one daemon may use a state file: stop the other one, or give this one its own TELEMETRY_STATE_FILE',
      );
    }

    // The owner is gone. Write our claim beside the lock and rename it over, so that two
    // daemons taking over at once cannot both believe they won: the last rename wins and
    // the check below makes the loser fail.
    const claim = `${this.lockFile}.${process.pid}`;
    try {
      fs.writeFileSync(claim, JSON.stringify(me), { mode: 0o600 });
      fs.renameSync(claim, this.lockFile);
    } catch (error) {
      throw new StateError(
        `cannot take over the lock ${this.lockFile}: ${(error as Error).message}; remove it if no daemon is running`,
      );
    }
    const after = readOwner(this.lockFile);
    if (after === undefined || !isSelf(after)) {
      throw new StateError(
        `another daemon took over the lock ${this.lockFile} at the same time; try again`,
      );
    }
  }

  noteCycle(atMs: number): void {
    const first = this.lastCycleAt === undefined;
    this.lastCycleAt = new Date(atMs).toISOString();
    // The first cycle is written at once, so that `status` does not show "unknown" for up to
    // a heartbeat interval after start.
    if (first) this.touch();
  }

  /** Rewrites the lock with a fresh heartbeat and the last cycle time. */
  private touch(): void {
    const owner = readOwner(this.lockFile);
    if (owner === undefined || !isSelf(owner)) return;
    try {
      const claim = `${this.lockFile}.${process.pid}`;
      fs.writeFileSync(claim, JSON.stringify({ ...owner, lastCycleAt: this.lastCycleAt }), {
        mode: 0o600,
      });
      fs.renameSync(claim, this.lockFile);
    } catch {
      // A missing lock file is noticed by the next daemon that starts; nothing to do here.
    }
  }
}

/** Reads who owns a state file, if anyone; for `status`. */
export function readOwner(lockFile: string): LockOwner | undefined {
  try {
    const parsed = JSON.parse(fs.readFileSync(lockFile, 'utf8')) as Partial<LockOwner>;
    if (typeof parsed.pid !== 'number' || typeof parsed.hostname !== 'string') return undefined;
    return {
      ...parsed,
      pid: parsed.pid,
      hostname: parsed.hostname,
      startedAt: String(parsed.startedAt),
    };
  } catch {
    return undefined;
  }
}

function isSelf(owner: LockOwner): boolean {
  return owner.pid === process.pid && owner.hostname === os.hostname();
}

function isAlive(owner: LockOwner, lockFile: string): boolean {
  if (owner.hostname !== os.hostname()) {
    const age = Date.now() - fs.statSync(lockFile).mtimeMs;
    return age < STALE_AFTER_MS;
  }
  // Our own pid in an old lock means a previous run in the same container, where the
  // daemon gets the same low PID on every start, so that run is over.
  if (owner.pid === process.pid) return false;
  try {
    process.kill(owner.pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
