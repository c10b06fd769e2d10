import fs from 'node:fs';
import path from 'node:path';
import { getAddress } from 'ethers';
import pino from 'pino';
import { parseJobId } from './energy-log';
import { LogScanner } from './scanner';
import type { PendingRevision } from './state';
import { StateStore, revisionKey } from './state';
import { readOwner } from './state-lock';

/**
 * The `status` command: what the state file records and what the log folder holds, read
 * without taking ownership, so it works beside a running daemon.
 */

export interface StatusSettings {
  stateFile: string;
  logDir: string;
  maxFileBytes: number;
}

export interface StatusReport {
  stateFile: string;
  daemon: {
    running: boolean;
    pid?: number;
    hostname?: string;
    startedAt?: string;
    lastCycleAt?: string;
  };
  done: number;
  pending: Array<{
    agent: string;
    jobId: string;
    nonce: string;
    lastUpdated: string;
    txHash?: string | undefined;
    failures: number;
    lastError?: string | undefined;
  }>;
  lastNonces: Record<string, string>;
  logs: { files: number; due: number; skipped: number };
}

export async function buildStatus(settings: StatusSettings): Promise<StatusReport> {
  const silent = pino({ level: 'silent' });
  const state = fs.existsSync(settings.stateFile)
    ? StateStore.readOnly(settings.stateFile, silent)
    : undefined;

  const owner = readOwner(`${settings.stateFile}.lock`);
  const running = owner !== undefined && processAlive(owner.pid);
  const pending = (state?.pending() ?? []).map(describePending);
  const lastNonces: Record<string, string> = {};
  for (const [user, nonce] of state?.nonceEntries() ?? []) lastNonces[user] = nonce.toString();

  const logs = await countDue(settings, state);
  return {
    stateFile: settings.stateFile,
    daemon: running
      ? {
          running,
          pid: owner.pid,
          hostname: owner.hostname,
          startedAt: owner.startedAt,
          lastCycleAt: owner.lastCycleAt,
        }
      : { running: false, lastCycleAt: owner?.lastCycleAt },
    done: state?.doneCount() ?? 0,
    pending,
    lastNonces,
    logs,
  };
}

/** Formats the report as a readable table. */
export function formatStatus(report: StatusReport): string {
  const lines: string[] = [];
  const daemon = report.daemon.running
    ? `running as pid ${report.daemon.pid} on ${report.daemon.hostname} since ${report.daemon.startedAt}`
    : 'not running';
  const failing = report.pending.filter((revision) => revision.failures > 0).length;

  lines.push(`state file     ${report.stateFile}`);
  lines.push(`daemon         ${daemon}`);
  lines.push(`last cycle     ${report.daemon.lastCycleAt ?? 'unknown'}`);
  lines.push(`jobs done      ${report.done}`);
  lines.push(`pending        ${report.pending.length} (${failing} failing)`);
  lines.push(
    `log files      ${report.logs.files} (${report.logs.due} due, ${report.logs.skipped} skipped)`,
  );

  if (report.pending.length > 0) {
    lines.push('', 'pending revisions');
    lines.push(row(['agent', 'job', 'nonce', 'lastUpdated', 'failures', 'last error']));
    for (const revision of report.pending) {
      lines.push(
        row([
          revision.agent,
          revision.jobId,
          revision.nonce,
          revision.lastUpdated,
          String(revision.failures),
          revision.lastError ?? (revision.txHash ? `tx ${revision.txHash} sent` : '-'),
        ]),
      );
    }
  }

  const nonces = Object.entries(report.lastNonces);
  if (nonces.length > 0) {
    lines.push('', 'last nonce per agent');
    for (const [agent, nonce] of nonces.sort()) lines.push(row([agent, nonce]));
  }
  return lines.join('\n');
}

/** Traces one job: every record about it still in the state file, oldest first. */
export function traceJob(stateFile: string, agent: string, jobIdText: string): string[] | string {
  let user: string;
  try {
    user = getAddress(agent);
  } catch {
    return `${agent} is not an address`;
  }
  const jobId = parseJobId(jobIdText);
  if (typeof jobId === 'string') return jobId;

  const records = StateStore.history(stateFile, revisionKey(user, jobId));
  return records.map(describeRecord);
}

function describeRecord(record: Record<string, unknown>): string {
  switch (record.t) {
    case 'sign': {
      const rev = record.rev as PendingRevision;
      return (
        `signed     revision ${new Date(rev.lastUpdatedMs).toISOString()} nonce ${rev.attestation.nonce} ` +
        `deadline ${rev.attestation.deadline} digest ${rev.digest} at ${new Date(rev.signedAtMs).toISOString()}`
      );
    }
    case 'tx':
      return `sent       transaction ${String(record.txHash)} (account nonce ${String(record.accountNonce)})`;
    case 'failure':
      return `failed     attempt ${String(record.failures)}: ${String(record.error)}`;
    case 'done':
      return `accepted   revision ${new Date(Number(record.lastUpdatedMs)).toISOString()} nonce ${String(record.nonce)} reference ${String(record.reference ?? '-')}`;
    default:
      return JSON.stringify(record);
  }
}

function describePending(revision: PendingRevision): StatusReport['pending'][number] {
  return {
    agent: revision.user,
    jobId: revision.jobId,
    nonce: revision.attestation.nonce ?? '?',
    lastUpdated: new Date(revision.lastUpdatedMs).toISOString(),
    txHash: revision.tx?.txHash,
    failures: revision.failures,
    lastError: revision.lastError,
  };
}

async function countDue(
  settings: StatusSettings,
  state: StateStore | undefined,
): Promise<StatusReport['logs']> {
  const scanner = new LogScanner(path.resolve(settings.logDir), {
    maxFileBytes: settings.maxFileBytes,
    fullScanEvery: 1,
  });
  let due = 0;
  let skipped = 0;
  const result = await scanner.scan(Date.now(), (scanned) => {
    if (!scanned.outcome.ok) {
      skipped += 1;
      return;
    }
    const key = revisionKey(scanned.outcome.log.agent, scanned.outcome.log.jobId);
    const attested = Math.max(
      state?.done(key)?.lastUpdatedMs ?? -1,
      state?.pendingFor(key)?.lastUpdatedMs ?? -1,
    );
    if (scanned.outcome.log.lastUpdatedMs > attested) due += 1;
  });
  return { files: result.filesSeen, due, skipped };
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function row(cells: string[]): string {
  return cells
    .map((cell, index) => (index < cells.length - 1 ? cell.padEnd(index === 0 ? 44 : 14) : cell))
    .join(' ');
}
