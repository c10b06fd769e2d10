import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * Starts the built daemon (`apps/operator/dist/telemetry.js`) as a child process and
 * collects its JSON log lines, so tests read exactly what an operator reads.
 */

export const REPO_ROOT = path.resolve(__dirname, '../..');
export const ENTRY = path.join(REPO_ROOT, 'apps/operator/dist/telemetry.js');
export const SAMPLES = path.join(REPO_ROOT, 'test/fixtures/samples');

export interface LogLine {
  level: string;
  msg: string;
  [field: string]: unknown;
}

export class DaemonProcess {
  readonly lines: LogLine[] = [];
  /** Everything the process wrote, raw, for secret searches. */
  output = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly child: ChildProcess;
  private readonly waiters = new Set<() => void>();

  constructor(env: Record<string, string>, args: string[] = [], cwd = REPO_ROOT) {
    this.child = spawn(process.execPath, [ENTRY, ...args], {
      cwd,
      env: { PATH: process.env.PATH ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let buffer = '';
    this.child.stdout?.on('data', (chunk: Buffer) => {
      this.output += chunk.toString();
      buffer += chunk.toString();
      const parts = buffer.split('\n');
      buffer = parts.pop() ?? '';
      for (const part of parts) this.addLine(part);
    });
    this.child.stderr?.on('data', (chunk: Buffer) => {
      this.output += chunk.toString();
    });
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        this.notify();
        resolve({ code, signal });
      });
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Lines with this message (exact match). */
  messages(msg: string): LogLine[] {
    return this.lines.filter((line) => line.msg === msg);
  }

  /** Waits until `predicate` is true for the lines read so far; fails after `timeoutMs`. */
  async waitFor(
    predicate: (lines: LogLine[]) => boolean,
    timeoutMs: number,
    what: string,
  ): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate(this.lines)) {
      if (!this.running) throw new Error(`daemon exited while waiting for ${what}\n${this.tail()}`);
      if (Date.now() > deadline)
        throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${this.tail()}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 100);
        this.waiters.add(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  async waitForAccepted(count: number, timeoutMs = 30_000): Promise<void> {
    await this.waitFor(
      (lines) => lines.filter((l) => l.msg === 'attestation accepted').length >= count,
      timeoutMs,
      `${count} accepted attestations`,
    );
  }

  /** Sends SIGTERM and waits for the exit. */
  async stop(timeoutMs = 15_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.running) this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    const result = await this.exited;
    clearTimeout(timer);
    return result;
  }

  async kill(): Promise<void> {
    if (this.running) this.child.kill('SIGKILL');
    await this.exited;
  }

  tail(count = 30): string {
    return this.output.split('\n').slice(-count).join('\n');
  }

  private addLine(text: string): void {
    if (text.trim() === '') return;
    try {
      this.lines.push(JSON.parse(text) as LogLine);
    } catch {
      this.lines.push({ level: 'raw', msg: text });
    }
    this.notify();
  }

  private notify(): void {
    for (const waiter of this.waiters) waiter();
    this.waiters.clear();
  }
}

/** Creates a temporary folder that the test removes with `cleanup`. */
export function temporaryFolder(prefix: string): { path: string; cleanup: () => void } {
  const folder = fs.mkdtempSync(path.join(os.tmpdir(), `${prefix}-`));
  return { path: folder, cleanup: () => fs.rmSync(folder, { recursive: true, force: true }) };
}

/** Copies the sample logs into `folder/logs` and returns that path. */
export function copySamples(folder: string): string {
  const logs = path.join(folder, 'logs');
  fs.cpSync(SAMPLES, logs, { recursive: true });
  return logs;
}

/** Appends a stage to a log file the way the orchestrator does: rewrite with a new summary. */
export function appendStage(file: string, cpuTimeMs: number, whenMs: number): void {
  const log = JSON.parse(fs.readFileSync(file, 'utf8')) as {
    stages: Array<Record<string, unknown>>;
    summary: Record<string, unknown>;
  };
  const timestamp = new Date(whenMs).toISOString();
  const last = log.stages[log.stages.length - 1] ?? {};
  log.stages.push({
    ...last,
    stageName: 'extra',
    timestamp,
    cpuTimeMs,
    gpuTimeMs: 0,
    efficiencyScore: 10,
    success: true,
  });
  const cpu = log.stages.reduce((sum, stage) => sum + Number(stage.cpuTimeMs), 0);
  const gpu = log.stages.reduce((sum, stage) => sum + Number(stage.gpuTimeMs ?? 0), 0);
  const efficiency =
    log.stages.reduce((sum, stage) => sum + Number(stage.efficiencyScore), 0) / log.stages.length;
  log.summary = {
    ...log.summary,
    totalCpuTimeMs: cpu,
    totalGpuTimeMs: gpu,
    energyScore: cpu + gpu,
    efficiencyScore: efficiency,
    averageEfficiency: efficiency,
    runs: log.stages.length,
    lastUpdated: timestamp,
  };
  fs.writeFileSync(file, JSON.stringify(log, null, 2));
}

/** Lists every sample log with an address agent: `{ agent, jobId, file }`. */
export function addressLogs(
  logRoot: string,
): Array<{ agent: string; jobId: string; file: string }> {
  const result: Array<{ agent: string; jobId: string; file: string }> = [];
  for (const agentDir of fs.readdirSync(logRoot)) {
    if (!/^0x[0-9a-fA-F]{40}$/.test(agentDir)) continue;
    for (const name of fs.readdirSync(path.join(logRoot, agentDir))) {
      result.push({
        agent: agentDir,
        jobId: name.replace(/\.json$/, ''),
        file: path.join(logRoot, agentDir, name),
      });
    }
  }
  return result;
}

/**
 * The attestation fields a log should produce, computed here with plain floats, separately
 * from the daemon's exact arithmetic (the sample values are far from rounding edges).
 */
export function expectedFields(file: string): Record<string, string> {
  const log = JSON.parse(fs.readFileSync(file, 'utf8')) as {
    jobId: string;
    agent: string;
    summary: Record<string, number | string>;
  };
  const s = log.summary;
  const seconds = Math.floor(Date.parse(String(s.lastUpdated)) / 1000);
  return {
    jobId: BigInt(log.jobId).toString(),
    user: log.agent,
    energy: String(Math.round(Number(s.energyScore))),
    degeneracy: String(Math.max(1, Number(s.runs))),
    epochId: String(Math.floor(seconds / 86400)),
    role: '2',
    uPre: String(Math.round(Number(s.totalCpuTimeMs))),
    uPost: String(Math.round(Number(s.totalCpuTimeMs) + Number(s.totalGpuTimeMs))),
    value: String(Math.round(Number(s.averageEfficiency) * 1_000_000)),
  };
}
