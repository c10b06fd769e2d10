import { getAddress } from 'ethers';
import { isLosslessNumber, parse } from 'lossless-json';
import type { Fraction } from './decimal';
import { add, divideByInteger, fromInteger, isNegative, parseDecimal } from './decimal';

/**
 * Parsing and normalising one energy log. Pure: it takes the file's text and location and
 * returns either a normalised job log or the reason the file is skipped. It never throws.
 */

/** The figures an attestation is built from, exact. */
export interface JobFigures {
  totalCpuTimeMs: Fraction;
  totalGpuTimeMs: Fraction;
  energyScore: Fraction;
  averageEfficiency: Fraction;
  runs: bigint;
}

export interface JobLog {
  /** Checksummed agent address. */
  agent: string;
  jobId: bigint;
  /** `summary.lastUpdated` as milliseconds since the epoch: the revision of the job. */
  lastUpdatedMs: number;
  figures: JobFigures;
  /** True when the file had no summary and it was computed from the stages. */
  summaryComputed: boolean;
}

/**
 * Reason a file was skipped. `transient` skips (a half-written file, a clock ahead of ours)
 * are read again every cycle; the others only when the file changes.
 */
export interface Skip {
  code: SkipCode;
  reason: string;
  transient: boolean;
}

export type SkipCode =
  | 'empty'
  | 'invalid-json'
  | 'not-an-object'
  | 'invalid-job-id'
  | 'job-id-mismatch'
  | 'invalid-agent'
  | 'agent-mismatch'
  | 'invalid-number'
  | 'invalid-time'
  | 'future-time'
  | 'no-figures'
  | 'too-large'
  | 'not-a-log-file';

export type ParseOutcome = { ok: true; log: JobLog } | { ok: false; skip: Skip };

export interface LogLocation {
  /** Folder name under the log root. */
  agentDir: string;
  /** File name, `<jobId>.json`. */
  fileName: string;
}

const UINT256_MAX = (1n << 256n) - 1n;

/** A `lastUpdated` further ahead of the host clock than this is treated as a clock error. */
export const MAX_CLOCK_AHEAD_MS = 24 * 60 * 60 * 1000;

/** Deeper JSON is skipped: the lossless parser recurses once per level. */
export const MAX_NESTING_DEPTH = 1000;

const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;

/** Maps an agent string to its folder name the way the orchestrator does. */
export function agentDirName(agent: string): string {
  return agent.replace(/[^a-zA-Z0-9_-]+/g, '_');
}

/** Parses a job id: decimal digits or `0x` hex, as text or as an exact JSON number. */
export function parseJobId(value: unknown): bigint | string {
  let text: string;
  if (isLosslessNumber(value)) text = value.value;
  else if (typeof value === 'string') text = value.trim();
  else return `jobId must be a string or an integer, not ${describeType(value)}`;

  if (text === '') return 'jobId is empty';
  if (text.startsWith('-')) return `jobId ${text} is negative`;
  let id: bigint;
  if (/^\d+$/.test(text)) id = BigInt(text);
  else if (/^0x[0-9a-fA-F]+$/.test(text)) id = BigInt(text);
  else return `jobId ${JSON.stringify(text)} is not a whole number (decimal or 0x hex)`;

  if (id > UINT256_MAX) return `jobId ${text} does not fit in uint256`;
  return id;
}

/** Parses and normalises one log file's text. */
export function parseEnergyLog(location: LogLocation, text: string, nowMs: number): ParseOutcome {
  const nameMatch = /^(.+)\.json$/.exec(location.fileName);
  if (nameMatch?.[1] === undefined) {
    return skip('not-a-log-file', `${location.fileName} is not named <jobId>.json`);
  }

  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  if (body.trim() === '')
    return skip('empty', 'the file is empty (the orchestrator may still be writing it)', true);

  if (nestingDepth(body) > MAX_NESTING_DEPTH) {
    return skip(
      'too-large',
      `the JSON is nested more than ${MAX_NESTING_DEPTH} levels deep, beyond what the parser reads safely`,
    );
  }

  let document: unknown;
  try {
    document = parse(body);
  } catch (error) {
    const detail = error instanceof Error ? error.message : String(error);
    if (/duplicate key/i.test(detail)) {
      // A finished file, not a half-written one: read it again only when it changes.
      return skip('invalid-json', `the file has a duplicate key (${detail})`);
    }
    return skip(
      'invalid-json',
      `the file is not valid JSON (${detail}); it may be half-written`,
      true,
    );
  }
  if (!isRecord(document)) {
    return skip('not-an-object', `the file holds ${describeType(document)}, not a JSON object`);
  }

  const jobId = resolveJobId(document, nameMatch[1]);
  if (typeof jobId !== 'bigint') return { ok: false, skip: jobId };

  const agent = resolveAgent(document, location.agentDir);
  if (!agent.ok) return { ok: false, skip: agent.skip };

  const figures = readFigures(document);
  if (!figures.ok) return { ok: false, skip: figures.skip };

  if (figures.lastUpdatedMs > nowMs + MAX_CLOCK_AHEAD_MS) {
    return skip(
      'future-time',
      `lastUpdated ${new Date(figures.lastUpdatedMs).toISOString()} is more than a day ahead of this host's clock; check the orchestrator's clock`,
      true,
    );
  }

  return {
    ok: true,
    log: {
      agent: agent.address,
      jobId,
      lastUpdatedMs: figures.lastUpdatedMs,
      figures: figures.figures,
      summaryComputed: figures.computed,
    },
  };
}

function resolveJobId(document: Record<string, unknown>, fileStem: string): bigint | Skip {
  const fromName = parseJobId(fileStem);
  if (typeof fromName === 'string') {
    return makeSkip('invalid-job-id', `the file name is not <jobId>.json: ${fromName}`);
  }
  if (document.jobId === undefined || document.jobId === null) return fromName;

  const fromFile = parseJobId(document.jobId);
  if (typeof fromFile === 'string') return makeSkip('invalid-job-id', fromFile);
  if (fromFile !== fromName) {
    return makeSkip(
      'job-id-mismatch',
      `jobId ${fromFile} in the file disagrees with the file name ${fileStem}.json`,
    );
  }
  return fromFile;
}

/** Checksummed addresses by their written form, because one agent folder has many logs. */
const checksumCache = new Map<string, string>();
const CHECKSUM_CACHE_SIZE = 10_000;

function checksummed(address: string): string {
  const cached = checksumCache.get(address);
  if (cached !== undefined) return cached;
  const result = getAddress(address);
  if (checksumCache.size >= CHECKSUM_CACHE_SIZE) checksumCache.clear();
  checksumCache.set(address, result);
  return result;
}

type AgentOutcome = { ok: true; address: string } | { ok: false; skip: Skip };

function resolveAgent(document: Record<string, unknown>, agentDir: string): AgentOutcome {
  const written = document.agent ?? agentDir;
  if (typeof written !== 'string') {
    return {
      ok: false,
      skip: makeSkip('invalid-agent', `agent must be a string, not ${describeType(written)}`),
    };
  }
  if (document.agent !== undefined && agentDirName(written) !== agentDir) {
    return {
      ok: false,
      skip: makeSkip(
        'agent-mismatch',
        `agent ${written} does not belong in the folder ${agentDir}`,
      ),
    };
  }
  if (!/^0x[0-9a-fA-F]{40}$/.test(written)) {
    return {
      ok: false,
      skip: makeSkip(
        'invalid-agent',
        `agent ${JSON.stringify(written)} is not an 0x address; attestations are signed for addresses only and names are not resolved`,
      ),
    };
  }
  try {
    return { ok: true, address: checksummed(written) };
  } catch {
    return {
      ok: false,
      skip: makeSkip('invalid-agent', `agent ${written} has an invalid EIP-55 checksum (a typo?)`),
    };
  }
}

type FiguresOutcome =
  | { ok: true; figures: JobFigures; lastUpdatedMs: number; computed: boolean }
  | { ok: false; skip: Skip };

function readFigures(document: Record<string, unknown>): FiguresOutcome {
  const summary = document.summary;
  if (isRecord(summary)) return readSummary(summary);
  if (summary !== undefined && summary !== null) {
    return {
      ok: false,
      skip: makeSkip('no-figures', `summary is ${describeType(summary)}, not an object`),
    };
  }
  if (Array.isArray(document.stages) && document.stages.length > 0)
    return computeSummary(document.stages);
  return {
    ok: false,
    skip: makeSkip('no-figures', 'the file has neither a summary nor any stages'),
  };
}

function readSummary(summary: Record<string, unknown>): FiguresOutcome {
  try {
    const totalCpuTimeMs = nonNegative(summary, 'totalCpuTimeMs', 'summary');
    const totalGpuTimeMs =
      summary.totalGpuTimeMs === undefined
        ? fromInteger(0n)
        : nonNegative(summary, 'totalGpuTimeMs', 'summary');
    const energyScore = nonNegative(summary, 'energyScore', 'summary');
    const efficiencyKey =
      summary.averageEfficiency !== undefined ? 'averageEfficiency' : 'efficiencyScore';
    const averageEfficiency = nonNegative(summary, efficiencyKey, 'summary');
    const runs = wholeNumber(summary, 'runs', 'summary');
    const lastUpdatedMs = time(summary.lastUpdated, 'summary.lastUpdated');
    return {
      ok: true,
      figures: { totalCpuTimeMs, totalGpuTimeMs, energyScore, averageEfficiency, runs },
      lastUpdatedMs,
      computed: false,
    };
  } catch (error) {
    if (error instanceof FieldError)
      return { ok: false, skip: makeSkip(error.code, error.message) };
    throw error;
  }
}

/** Computes a missing summary: totals are sums, efficiency is the mean, the time is the latest stage's. */
function computeSummary(stages: unknown[]): FiguresOutcome {
  let totalCpuTimeMs = fromInteger(0n);
  let totalGpuTimeMs = fromInteger(0n);
  let efficiencySum = fromInteger(0n);
  let lastUpdatedMs = -Infinity;

  try {
    for (const [index, stage] of stages.entries()) {
      const where = `stages[${index}]`;
      if (!isRecord(stage))
        throw new FieldError('no-figures', `${where} is ${describeType(stage)}, not an object`);
      totalCpuTimeMs = add(totalCpuTimeMs, nonNegative(stage, 'cpuTimeMs', where));
      const gpu =
        stage.gpuTimeMs === undefined ? fromInteger(0n) : nonNegative(stage, 'gpuTimeMs', where);
      totalGpuTimeMs = add(totalGpuTimeMs, gpu);
      efficiencySum = add(efficiencySum, nonNegative(stage, 'efficiencyScore', where));
      lastUpdatedMs = Math.max(lastUpdatedMs, time(stage.timestamp, `${where}.timestamp`));
    }
  } catch (error) {
    if (error instanceof FieldError)
      return { ok: false, skip: makeSkip(error.code, `no summary, and ${error.message}`) };
    throw error;
  }

  const runs = BigInt(stages.length);
  return {
    ok: true,
    figures: {
      totalCpuTimeMs,
      totalGpuTimeMs,
      energyScore: add(totalCpuTimeMs, totalGpuTimeMs),
      averageEfficiency: divideByInteger(efficiencySum, runs),
      runs,
    },
    lastUpdatedMs,
    computed: true,
  };
}

class FieldError extends Error {
  constructor(
    readonly code: SkipCode,
    message: string,
  ) {
    super(message);
  }
}

/** Reads a finite, non-negative number given as a JSON number or numeric text. */
function nonNegative(record: Record<string, unknown>, key: string, where: string): Fraction {
  const value = record[key];
  const name = `${where}.${key}`;
  if (value === undefined || value === null)
    throw new FieldError('invalid-number', `${name} is missing`);

  let text: string;
  if (isLosslessNumber(value)) text = value.value;
  else if (typeof value === 'string') text = value;
  else throw new FieldError('invalid-number', `${name} is ${describeType(value)}, not a number`);

  const parsed = parseDecimal(text);
  if (parsed === undefined) {
    throw new FieldError(
      'invalid-number',
      `${name} is ${JSON.stringify(text)}, not a finite number`,
    );
  }
  if (isNegative(parsed)) throw new FieldError('invalid-number', `${name} is ${text}, below zero`);
  return parsed;
}

function wholeNumber(record: Record<string, unknown>, key: string, where: string): bigint {
  const value = nonNegative(record, key, where);
  if (value.numerator % value.denominator !== 0n) {
    throw new FieldError('invalid-number', `${where}.${key} is not a whole number`);
  }
  return value.numerator / value.denominator;
}

function time(value: unknown, name: string): number {
  if (value === undefined || value === null) {
    throw new FieldError('invalid-time', `${name} is missing`);
  }
  if (typeof value !== 'string' || !ISO_TIME.test(value)) {
    const shown =
      typeof value === 'string' ? JSON.stringify(value.slice(0, 80)) : describeType(value);
    throw new FieldError(
      'invalid-time',
      `${name} is ${shown}, not an ISO 8601 time such as 2026-11-30T10:15:02.113Z`,
    );
  }
  const ms = Date.parse(value);
  if (!Number.isFinite(ms) || !isRealDate(value)) {
    throw new FieldError('invalid-time', `${name} ${value} is not a real date`);
  }
  if (ms < 0) throw new FieldError('invalid-time', `${name} ${value} is before 1970`);
  return ms;
}

/** Returns the deepest nesting of arrays and objects, ignoring brackets inside strings. */
function nestingDepth(text: string): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let index = 0; index < text.length; index += 1) {
    const char = text.charCodeAt(index);
    if (inString) {
      if (char === 0x5c)
        index += 1; // Backslash: the next character is escaped.
      else if (char === 0x22) inString = false;
    } else if (char === 0x22) {
      inString = true;
    } else if (char === 0x7b || char === 0x5b) {
      depth += 1;
      if (depth > deepest) deepest = depth;
    } else if (char === 0x7d || char === 0x5d) {
      depth -= 1;
    }
  }
  return deepest;
}

/** Rejects dates that `Date.parse` rolls over, such as February 30th. */
function isRealDate(iso: string): boolean {
  const [year, month, day] = iso.slice(0, 10).split('-').map(Number);
  const date = new Date(Date.UTC(year ?? 0, (month ?? 1) - 1, day ?? 1));
  return date.getUTCMonth() + 1 === month && date.getUTCDate() === day;
}

function skip(code: SkipCode, reason: string, transient = false): ParseOutcome {
  return { ok: false, skip: makeSkip(code, reason, transient) };
}

function makeSkip(code: SkipCode, reason: string, transient = false): Skip {
  return { code, reason, transient };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return (
    typeof value === 'object' && value !== null && !Array.isArray(value) && !isLosslessNumber(value)
  );
}

function describeType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (isLosslessNumber(value)) return `the number ${value.value}`;
  if (typeof value === 'string') return `the string ${JSON.stringify(value.slice(0, 80))}`;
  return `a ${typeof value}`;
}
