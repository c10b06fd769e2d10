/**
 * Benchmark of the daemon against simple baselines. Each case measures the daemon and its
 * baseline in the same run and prints both, their ratio and whether the goal is met:
 *
 *   1. idle cycle over N already attested logs, against re-reading and parsing every file
 *      (what the reference daemon did) and against a bare walk that stats every file;
 *   2. latency from a new log file to its acceptance, against a polling-only daemon;
 *   3. blocks used by a contract-mode backlog on anvil with one block per second, against
 *      one transaction per block;
 *   4. API-mode backlog throughput, against the same daemon with TELEMETRY_CONCURRENCY=1;
 *   5. state file bytes written per accepted attestation, at two state sizes;
 *   6. peak resident memory of the daemon process during its first scan of N logs.
 *
 * All data is generated in a temporary folder. The only servers it talks to are the anvil
 * nodes and test ingestion servers it starts itself on 127.0.0.1. Daemons, servers, anvil
 * and the folder are removed at the end, also after a failure, a timeout or Ctrl-C.
 *
 * Run: npx tsc -p apps/operator/tsconfig.json && npx tsx scripts/bench.ts [--quick] [--help]
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Contract, Wallet } from 'ethers';
import type { ContractTransactionResponse } from 'ethers';
import pino from 'pino';
import type { Attestation } from '../apps/operator/attestation';
import {
  attestationDomain,
  figuresFingerprint,
  mapFigures,
  signAttestation,
} from '../apps/operator/attestation';
import type { Config } from '../apps/operator/config';
import { DEFAULTS, mergeSettings, parseConfig } from '../apps/operator/config';
import { createDaemon } from '../apps/operator/daemon';
import { parseEnergyLog } from '../apps/operator/energy-log';
import { StateStore, revisionKey } from '../apps/operator/state';
import { readOwner } from '../apps/operator/state-lock';
import { ORACLE_ABI } from '../apps/operator/submitter-contract';
import type { Chain } from '../test/support/chain';
import {
  ANVIL_KEYS,
  deployOracle,
  latestTimestamp,
  readAcceptances,
  startAnvil,
} from '../test/support/chain';
import { DaemonProcess, ENTRY, temporaryFolder } from '../test/support/daemon-process';
import type { IngestServer } from '../test/support/ingest-server';
import { startIngestServer } from '../test/support/ingest-server';
import { agentAddresses, seededRandom, writeJobLog } from '../test/support/log-factory';

// ---------------------------------------------------------------------------------------------
// Options.

interface BenchOptions {
  /** Cases 1 and 6: attested logs in the idle tree. */
  logs: number;
  /** Cases 1 and 6: agent folders the idle tree is spread over. */
  logAgents: number;
  /** Case 1: timed runs of each baseline. The median is reported. */
  idleCycles: number;
  /** Case 2: new log files written one second apart. */
  latencyFiles: number;
  contractRevisions: number;
  contractAgents: number;
  /** Case 3: revisions the one-transaction-per-block baseline sends. */
  contractSample: number;
  apiRevisions: number;
  apiAgents: number;
  /** Case 4: revisions delivered with TELEMETRY_CONCURRENCY=1. */
  apiBaselineRevisions: number;
  /** Case 4: revisions per run of the concurrency table. */
  concurrencyRevisions: number;
  concurrencyLevels: number[];
  /** Case 5: done records preloaded into the state file, one measurement per value. */
  stateJobs: number[];
  /** Case 5: attestations delivered per measurement. */
  stateAttestations: number;
  only: number[];
  /** The whole run is stopped, and everything cleaned up, after this many minutes. */
  timeoutMinutes: number;
}

const CASE_IDS = [1, 2, 3, 4, 5, 6];

const FULL_SIZES: BenchOptions = {
  logs: 100_000,
  logAgents: 1_000,
  idleCycles: 7,
  latencyFiles: 10,
  contractRevisions: 1_000,
  contractAgents: 50,
  contractSample: 20,
  apiRevisions: 10_000,
  apiAgents: 100,
  apiBaselineRevisions: 500,
  concurrencyRevisions: 1_000,
  concurrencyLevels: [8, 16, 32, 64],
  stateJobs: [1_000, 100_000],
  stateAttestations: 500,
  only: CASE_IDS,
  timeoutMinutes: 40,
};

/** The `--quick` preset: every case with smaller sizes. */
const QUICK_SIZES: Partial<BenchOptions> = {
  logs: 10_000,
  logAgents: 100,
  idleCycles: 5,
  latencyFiles: 5,
  contractRevisions: 200,
  contractAgents: 20,
  contractSample: 5,
  apiRevisions: 2_000,
  apiAgents: 50,
  apiBaselineRevisions: 200,
  concurrencyRevisions: 500,
  stateJobs: [1_000, 10_000],
  stateAttestations: 200,
};

type OptionKind = 'count' | 'counts' | 'cases';

const OPTION_SPECS: ReadonlyArray<{
  flag: string;
  key: keyof BenchOptions;
  kind: OptionKind;
  help: string;
}> = [
  { flag: '--logs', key: 'logs', kind: 'count', help: 'cases 1, 6: attested logs in the tree' },
  { flag: '--log-agents', key: 'logAgents', kind: 'count', help: 'cases 1, 6: agent folders' },
  {
    flag: '--idle-cycles',
    key: 'idleCycles',
    kind: 'count',
    help: 'case 1: timed runs of each baseline',
  },
  { flag: '--latency-files', key: 'latencyFiles', kind: 'count', help: 'case 2: new files' },
  {
    flag: '--contract-revisions',
    key: 'contractRevisions',
    kind: 'count',
    help: 'case 3: revisions delivered by the daemon',
  },
  { flag: '--contract-agents', key: 'contractAgents', kind: 'count', help: 'case 3: agents' },
  {
    flag: '--contract-sample',
    key: 'contractSample',
    kind: 'count',
    help: 'case 3: revisions sent one per block by the baseline',
  },
  {
    flag: '--api-revisions',
    key: 'apiRevisions',
    kind: 'count',
    help: 'case 4: revisions delivered with the default concurrency',
  },
  { flag: '--api-agents', key: 'apiAgents', kind: 'count', help: 'case 4: agents' },
  {
    flag: '--api-baseline-revisions',
    key: 'apiBaselineRevisions',
    kind: 'count',
    help: 'case 4: revisions delivered with TELEMETRY_CONCURRENCY=1',
  },
  {
    flag: '--concurrency-revisions',
    key: 'concurrencyRevisions',
    kind: 'count',
    help: 'case 4: revisions per run of the concurrency table',
  },
  {
    flag: '--concurrency-levels',
    key: 'concurrencyLevels',
    kind: 'counts',
    help: 'case 4: TELEMETRY_CONCURRENCY values of the table, comma-separated',
  },
  {
    flag: '--state-jobs',
    key: 'stateJobs',
    kind: 'counts',
    help: 'case 5: done records preloaded, comma-separated',
  },
  {
    flag: '--state-attestations',
    key: 'stateAttestations',
    kind: 'count',
    help: 'case 5: attestations delivered per state size',
  },
  { flag: '--only', key: 'only', kind: 'cases', help: 'cases to run, comma-separated (1-6)' },
  {
    flag: '--timeout-min',
    key: 'timeoutMinutes',
    kind: 'count',
    help: 'stop the whole run after this many minutes',
  },
];

function usage(): string {
  const lines = OPTION_SPECS.map((spec) => {
    const value = FULL_SIZES[spec.key];
    const defaultText = Array.isArray(value) ? value.join(',') : String(value);
    return `  ${`${spec.flag} N`.padEnd(30)}${spec.help} (default ${defaultText})`;
  });
  return [
    'Usage: npx tsx scripts/bench.ts [--quick] [options]',
    '',
    'Measures the built daemon (apps/operator/dist) and a baseline per case, in the same run.',
    'Build first: npx tsc -p apps/operator/tsconfig.json',
    '',
    `  ${'--quick'.padEnd(30)}smaller sizes; explicit options still apply on top`,
    ...lines,
    `  ${'-h, --help'.padEnd(30)}print this help`,
  ].join('\n');
}

function parseOptions(args: readonly string[]): BenchOptions | 'help' {
  if (args.includes('-h') || args.includes('--help')) return 'help';
  const options: BenchOptions = { ...FULL_SIZES };
  if (args.includes('--quick')) Object.assign(options, QUICK_SIZES);

  for (let index = 0; index < args.length; index += 1) {
    const arg = args[index] ?? '';
    if (arg === '--quick') continue;
    const [flag, inline] = arg.split('=', 2) as [string, string | undefined];
    const spec = OPTION_SPECS.find((candidate) => candidate.flag === flag);
    if (spec === undefined) throw new Error(`unknown argument ${arg}; run with --help for usage`);

    const text = inline ?? args[(index += 1)];
    if (text === undefined) throw new Error(`${flag} needs a value; run with --help for usage`);
    Object.assign(options, { [spec.key]: parseOptionValue(flag, spec.kind, text) });
  }
  return options;
}

function parseOptionValue(flag: string, kind: OptionKind, text: string): number | number[] {
  const values = text.split(',').map((part) => {
    const value = Number(part.trim());
    if (!Number.isInteger(value) || value < 1) {
      throw new Error(`${flag} is ${JSON.stringify(text)}: expected whole numbers of at least 1`);
    }
    return value;
  });
  if (kind === 'count') {
    if (values.length !== 1) throw new Error(`${flag} takes one number, got ${text}`);
    return values[0] ?? 1;
  }
  if (kind === 'cases' && values.some((value) => !CASE_IDS.includes(value))) {
    throw new Error(`${flag} is ${text}: cases are numbered 1 to 6`);
  }
  return values;
}

// ---------------------------------------------------------------------------------------------
// Fixed settings.

/** API mode reads no chain, so the EIP-712 domain's verifyingContract can be any address. */
const API_ORACLE_ADDRESS = '0x00000000000000000000000000000000000E0e0E';
const API_CHAIN_ID = 31337n;
/** Anvil's second default account: funded on every fresh anvil and not the oracle's owner. */
const SIGNER = new Wallet(ANVIL_KEYS[1] ?? '');
/** Sends the baseline transactions of case 3, so that the daemon's account nonces stay its own. */
const BASELINE_SENDER_KEY = ANVIL_KEYS[2] ?? '';

const SEEDS = { idle: 11, latency: 21, contract: 31, contractSample: 32, api: 41, state: 51 };

const WAIT_POLL_MS = 100;
/** Case 2: logs already delivered before the timed writes start. */
const LATENCY_INITIAL_LOGS = 20;
const LATENCY_AGENTS = 5;
/** Case 2: the gap between two timed writes. */
const LATENCY_WRITE_GAP_MS = 1_000;
/** Case 2: quiet time after the initial deliveries, so the timed writes find an idle daemon. */
const LATENCY_SETTLE_MS = 2_000;
/** Case 3: TELEMETRY_CONCURRENCY of the contract backlog. */
const CONTRACT_CONCURRENCY = 64;
/** Case 4: delay of every response of the test ingestion server. */
const API_LATENCY_MS = 20;
/** Case 6: memory goal of the daemon process, in bytes (10^6 per MB). */
const MEMORY_GOAL_BYTES = 200_000_000;
/** Case 6: a poll interval long enough that the daemon runs exactly one cycle. */
const SINGLE_CYCLE_POLL_MS = 600_000;

const SILENT_LOGGER = pino({ level: 'silent' });

// ---------------------------------------------------------------------------------------------
// Results and formatting.

interface CaseResult {
  id: string;
  title: string;
  daemon: string;
  baseline: string;
  ratio: string;
  goal: string;
  met: boolean;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  if (sorted.length === 0) return Number.NaN;
  if (sorted.length % 2 === 1) return sorted[middle] ?? Number.NaN;
  return ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
}

function formatMs(ms: number): string {
  return ms >= 100 ? `${Math.round(ms)} ms` : `${ms.toFixed(1)} ms`;
}

function formatRatio(ratio: number): string {
  if (ratio >= 100) return `${ratio.toFixed(0)}×`;
  return `${ratio >= 1 ? ratio.toFixed(1) : ratio.toFixed(2)}×`;
}

function formatMegabytes(bytes: number): string {
  return `${(bytes / 1_000_000).toFixed(1)} MB`;
}

function formatRate(perSecond: number): string {
  return `${perSecond.toFixed(1)}/s`;
}

function report(caseId: number, message: string): void {
  console.log(`[${caseId}] ${message}`);
}

function printSummary(results: readonly CaseResult[], failures: readonly string[]): void {
  console.log('\n## Results\n');
  console.log('| Case | Daemon | Baseline (same run) | Ratio | Goal | Met |');
  console.log('| --- | --- | --- | --- | --- | --- |');
  for (const result of results) {
    const cells = [
      `${result.id}. ${result.title}`,
      result.daemon,
      result.baseline,
      result.ratio,
      result.goal,
      result.met ? 'yes' : 'NO',
    ];
    console.log(`| ${cells.join(' | ')} |`);
  }
  for (const failure of failures) console.log(`\n${failure}`);
}

// ---------------------------------------------------------------------------------------------
// Cleanup: every process and server started belongs to a scope, and every open scope is
// closed on the normal path, and killed on an exit, a signal or the run timeout.

interface CleanupEntry {
  stop: () => Promise<void>;
  /** Synchronous last resort on process exit, for what would outlive this process. */
  killNow?: () => void;
}

const openScopes = new Set<Scope>();
/** Maximum time in ms to wait for one stop (daemon SIGTERM, anvil, server close). */
const STOP_TIMEOUT_MS = 20_000;

class Scope {
  private readonly entries: CleanupEntry[] = [];

  constructor() {
    openScopes.add(this);
  }

  add(stop: () => Promise<void>, killNow?: () => void): void {
    this.entries.push({ stop, killNow });
  }

  async close(): Promise<void> {
    openScopes.delete(this);
    for (const entry of this.entries.splice(0).reverse()) {
      try {
        await withTimeout(entry.stop(), STOP_TIMEOUT_MS, 'stopping a daemon, server or anvil');
      } catch (error) {
        console.error(`cleanup: ${(error as Error).message}; killing it`);
        entry.killNow?.();
      }
    }
  }

  killNow(): void {
    for (const entry of this.entries) entry.killNow?.();
  }
}

async function withTimeout<T>(
  promise: Promise<T>,
  timeoutMs: number,
  description: string,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${description} timed out after ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function startDaemon(scope: Scope, env: Record<string, string>): DaemonProcess {
  const daemon = new DaemonProcess(env);
  scope.add(
    async () => {
      await daemon.stop();
    },
    () => void daemon.kill(),
  );
  return daemon;
}

const reportedWarnings = new Set<string>();

/** Prints, once per run, each Node.js process warning the daemon wrote outside its JSON log. */
function reportProcessWarnings(caseId: number, daemon: DaemonProcess): void {
  for (const line of daemon.output.split('\n')) {
    const warning = /^\(node:\d+\) (\w*Warning.*)$/.exec(line)?.[1];
    if (warning === undefined || reportedWarnings.has(warning)) continue;
    reportedWarnings.add(warning);
    report(caseId, `daemon stderr: ${warning}`);
  }
}

async function startServer(scope: Scope, latencyMs = 0): Promise<IngestServer> {
  const server = await startIngestServer({
    chainId: API_CHAIN_ID,
    verifyingContract: API_ORACLE_ADDRESS,
    signers: [SIGNER.address],
    faults: { latencyMs },
  });
  scope.add(() => server.close());
  return server;
}

async function startChain(scope: Scope): Promise<Chain> {
  const chain = await startAnvil({ blockTime: 1 });
  scope.add(
    () => chain.stop(),
    () => chain.process.kill('SIGKILL'),
  );
  return chain;
}

/**
 * Polls `condition` until it holds. Throws after `timeoutMs`, or at once when `daemon`
 * exits, with the daemon's last output.
 */
async function waitUntil(
  condition: () => boolean,
  timeoutMs: number,
  description: string,
  daemon?: DaemonProcess,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    const tail = daemon === undefined ? '' : `\ndaemon output:\n${daemon.tail()}`;
    if (daemon !== undefined && !daemon.running) {
      throw new Error(`the daemon exited while waiting for ${description}${tail}`);
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${description}${tail}`);
    }
    await sleep(WAIT_POLL_MS);
  }
}

// ---------------------------------------------------------------------------------------------
// Data and settings.

interface JobFile {
  agent: string;
  jobId: string;
  file: string;
}

/**
 * Writes `jobs` one-stage logs, spread round-robin over `agents`, the way the orchestrator
 * writes them. `lastUpdated` rises by 1 ms per job from an hour ago, so the daemon's
 * oldest-first order is the writing order.
 */
function writeLogTree(
  root: string,
  jobs: number,
  agents: readonly string[],
  seed: number,
  firstJobId = 1,
): JobFile[] {
  const random = seededRandom(seed);
  const startMs = Date.now() - 3_600_000;
  const files: JobFile[] = [];
  fs.mkdirSync(root, { recursive: true });

  for (let index = 0; index < jobs; index += 1) {
    const agent = agents[index % agents.length] ?? '';
    const jobId = String(firstJobId + index);
    const file = writeJobLog(root, agent, jobId, 1, startMs + index, random);
    files.push({ agent, jobId, file });
  }
  return files;
}

/** Daemon variables for API mode against a test ingestion server. */
function apiSettings(
  target: { logDir: string; stateFile: string; apiUrl: string },
  overrides: Record<string, string> = {},
): Record<string, string> {
  return {
    TELEMETRY_MODE: 'api',
    ENERGY_LOG_DIR: target.logDir,
    TELEMETRY_STATE_FILE: target.stateFile,
    ENERGY_ORACLE_API_URL: target.apiUrl,
    ENERGY_ORACLE_ADDRESS: API_ORACLE_ADDRESS,
    ENERGY_ORACLE_CHAIN_ID: API_CHAIN_ID.toString(),
    ENERGY_ORACLE_SIGNER_KEY: SIGNER.privateKey,
    ...overrides,
  };
}

/** Builds the daemon's configuration from `settings` alone, for in-process runs. */
function daemonConfig(settings: Record<string, string>): Config {
  return parseConfig(mergeSettings([], settings, undefined).raw);
}

/** Reads one `kB` field (VmHWM, VmRSS) of /proc/<pid>/status, in bytes. */
function procStatusBytes(pid: number, field: string): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
  if (match?.[1] === undefined) throw new Error(`/proc/${pid}/status has no ${field} line`);
  return Number(match[1]) * 1024;
}

const CLOCK_TICKS_PER_SECOND = readClockTicks();

function readClockTicks(): number {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100; // USER_HZ on every mainstream Linux architecture.
  }
}

/** User plus system CPU seconds of a running process, from /proc/<pid>/stat. */
function procCpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which is in brackets and may contain spaces.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return ticks / CLOCK_TICKS_PER_SECOND;
}

function benchCpuSeconds(since: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(since);
  return (used.user + used.system) / 1e6;
}

// ---------------------------------------------------------------------------------------------
// Cases 1 and 6 share a tree of N logs with a state file that records every one as done.

interface AttestedTree {
  root: string;
  stateFile: string;
  files: number;
}

let attestedTreeCache: AttestedTree | undefined;

/** Paths of the shared tree. `attestedTree` writes the files. */
function attestedTreePaths(workspace: string): { root: string; stateFile: string } {
  return {
    root: path.join(workspace, 'idle', 'logs'),
    stateFile: path.join(workspace, 'idle', 'state.json'),
  };
}

/** Writes the shared tree on first use. `config` gives the mapping the done records match. */
async function attestedTree(
  workspace: string,
  options: BenchOptions,
  config: Config,
): Promise<AttestedTree> {
  if (attestedTreeCache !== undefined) return attestedTreeCache;

  const { root, stateFile } = attestedTreePaths(workspace);
  const agents = agentAddresses(options.logAgents, SEEDS.idle);
  const started = performance.now();
  const files = writeLogTree(root, options.logs, agents, SEEDS.idle);
  const written = performance.now();
  await recordAllDone(stateFile, files, config);
  const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;
  console.log(
    `idle tree: ${files.length} logs in ${options.logAgents} agent folders written in ` +
      `${seconds(written - started)}; state file with every job done written in ` +
      `${seconds(performance.now() - written)} (${fs.statSync(stateFile).size} bytes)`,
  );

  attestedTreeCache = { root, stateFile, files: files.length };
  return attestedTreeCache;
}

/**
 * Records every log as done through the daemon's own StateStore, with the fingerprint the
 * daemon computes from the file, so that the daemon finds nothing due and nothing changed.
 */
async function recordAllDone(stateFile: string, files: JobFile[], config: Config): Promise<void> {
  const state = await StateStore.open(stateFile, SILENT_LOGGER);
  const nonces = new Map<string, number>();
  let writes: Array<Promise<void>> = [];
  const nowMs = Date.now();

  try {
    for (const job of files) {
      const location = {
        agentDir: path.basename(path.dirname(job.file)),
        fileName: `${job.jobId}.json`,
      };
      const parsed = parseEnergyLog(location, fs.readFileSync(job.file, 'utf8'), nowMs);
      if (!parsed.ok)
        throw new Error(`generated log ${job.file} is skipped: ${parsed.skip.reason}`);
      const figures = mapFigures(parsed.log, config);
      if (typeof figures === 'string') throw new Error(`generated log ${job.file}: ${figures}`);

      const nonce = (nonces.get(parsed.log.agent) ?? 0) + 1;
      nonces.set(parsed.log.agent, nonce);
      const key = revisionKey(parsed.log.agent, parsed.log.jobId);
      writes.push(
        state.recordDone(key, {
          lastUpdatedMs: parsed.log.lastUpdatedMs,
          fingerprint: figuresFingerprint(figures),
          nonce: String(nonce),
          reference: `att-${writes.length + 1}`,
        }),
      );
      // The store commits queued records with one write, so this bounds memory, not speed.
      if (writes.length >= 5_000) {
        await Promise.all(writes);
        writes = [];
      }
    }
    await Promise.all(writes);
  } finally {
    await state.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Case 1: idle cycle.

/** Baseline (a): re-reads and parses every log, as the reference daemon did each cycle. */
function readAndParseEveryFile(root: string): number {
  let files = 0;
  for (const agent of fs.readdirSync(root, { withFileTypes: true })) {
    if (!agent.isDirectory()) continue;
    const folder = path.join(root, agent.name);
    for (const entry of fs.readdirSync(folder, { withFileTypes: true })) {
      if (!entry.isFile() || !entry.name.endsWith('.json')) continue;
      JSON.parse(fs.readFileSync(path.join(folder, entry.name), 'utf8'));
      files += 1;
    }
  }
  return files;
}

/** Baseline (b), the floor for finding changes by polling: list every folder, stat every file. */
function statEveryFile(root: string): number {
  let files = 0;
  for (const agent of fs.readdirSync(root, { withFileTypes: true })) {
    if (!agent.isDirectory()) continue;
    const folder = path.join(root, agent.name);
    for (const entry of fs.readdirSync(folder, { withFileTypes: true })) {
      if (!entry.isFile() || !entry.name.endsWith('.json')) continue;
      fs.statSync(path.join(folder, entry.name));
      files += 1;
    }
  }
  return files;
}

/** Runs `work` and returns its time in ms, after checking that it saw `expected` files. */
function timeSync(work: () => number, expected: number, description: string): number {
  const started = performance.now();
  const count = work();
  const ms = performance.now() - started;
  if (count !== expected) {
    throw new Error(`${description} saw ${count} files, expected ${expected}`);
  }
  return ms;
}

/** The scanner's default: with watching on, every this many cycles list every folder. */
const STAT_WALK_EVERY = 30;

async function idleCycleCase(workspace: string, options: BenchOptions): Promise<CaseResult[]> {
  const scope = new Scope();
  try {
    // The server only gives the submitter a loopback URL: nothing is due, so nothing is sent.
    const server = await startServer(scope);
    const paths = attestedTreePaths(workspace);
    const config = daemonConfig(
      apiSettings({ logDir: paths.root, stateFile: paths.stateFile, apiUrl: server.url }),
    );
    const tree = await attestedTree(workspace, options, config);
    const daemon = await createDaemon(config, SIGNER, SILENT_LOGGER);
    scope.add(() => daemon.close());
    await daemon.service.connect();
    // As in a running daemon: the folder watches let quiet cycles skip unchanged folders.
    daemon.service.watchLogs();

    const cycle = async (): Promise<number> => {
      const started = performance.now();
      const result = await daemon.service.runCycle();
      if (result.started !== 0) {
        throw new Error(`a cycle started ${result.started} deliveries; every log should be done`);
      }
      return performance.now() - started;
    };

    // The first cycle reads and parses every file, as every TELEMETRY_FULL_SCAN_EVERY-th
    // cycle does. It also warms the page cache, and each baseline gets one untimed run too.
    const firstMs = await cycle();
    await cycle();
    readAndParseEveryFile(tree.root);
    statEveryFile(tree.root);
    report(
      1,
      `in process: TelemetryService.runCycle() of the daemon's own modules; first cycle ` +
        `(reads and parses all ${tree.files} files): ${formatMs(firstMs)}`,
    );

    // One period of the daemon's periodic listing: every STAT_WALK_EVERY-th cycle lists and
    // stats every folder, the others only folders that reported a change.
    const daemonMs: number[] = [];
    for (let round = 0; round < STAT_WALK_EVERY; round += 1) daemonMs.push(await cycle());
    const parseMs: number[] = [];
    const statMs: number[] = [];
    for (let round = 0; round < options.idleCycles; round += 1) {
      parseMs.push(timeSync(() => readAndParseEveryFile(tree.root), tree.files, 'baseline (a)'));
      statMs.push(timeSync(() => statEveryFile(tree.root), tree.files, 'baseline (b)'));
    }
    if (server.accepted.length > 0) throw new Error('the idle daemon sent attestations');

    const quiet = median(daemonMs);
    const idle = daemonMs.reduce((sum, ms) => sum + ms, 0) / daemonMs.length;
    report(
      1,
      `daemon idle cycle: median ${formatMs(quiet)}, mean over ${STAT_WALK_EVERY} cycles ` +
        `(one of which lists and stats every folder) ${formatMs(idle)}; the ratios use the mean`,
    );
    const reread = median(parseMs);
    const floor = median(statMs);
    const list = (values: number[]): string => values.map((ms) => Math.round(ms)).join(', ');
    report(1, `daemon idle cycle, ms per round: ${list(daemonMs)}`);
    report(1, `baseline (a) read + JSON.parse every file, ms: ${list(parseMs)}`);
    report(1, `baseline (b) list folders + stat every file, ms: ${list(statMs)}`);
    report(
      1,
      `(a) / (b) = ${formatRatio(reread / floor)}: a daemon that stats every file each cycle ` +
        'could be at most this much faster than (a); the daemon lists only folders that changed',
    );
    const fullScanEvery = config.fullScanEvery;
    const amortisedMs = (firstMs + (fullScanEvery - 1) * idle) / fullScanEvery;
    report(
      1,
      `estimate with one full read every ${fullScanEvery} cycles (TELEMETRY_FULL_SCAN_EVERY): ` +
        `${formatMs(amortisedMs)} per cycle on average, ${formatRatio(reread / amortisedMs)} ` +
        'faster than baseline (a)',
    );

    const title = `Idle cycle, ${tree.files} attested logs (mean of ${STAT_WALK_EVERY} daemon cycles)`;
    return [
      {
        id: '1a',
        title: `${title} vs re-read + parse`,
        daemon: formatMs(idle),
        baseline: `${formatMs(reread)} (a) read + JSON.parse all`,
        ratio: `${formatRatio(reread / idle)} faster`,
        goal: '≥ 20× faster',
        met: reread / idle >= 20,
      },
      {
        id: '1b',
        title: `${title} vs bare walk`,
        daemon: formatMs(idle),
        baseline: `${formatMs(floor)} (b) readdir + stat all`,
        ratio: `${formatRatio(idle / floor)} of the floor`,
        goal: '≤ 2× the floor',
        met: idle / floor <= 2,
      },
    ];
  } finally {
    await scope.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Case 2: latency from a new log file to its acceptance.

/**
 * Starts the built daemon over a small tree, waits until it is idle, then writes `count`
 * new logs one second apart. Returns each file's time from written to accepted, in ms.
 */
async function measureLatencies(
  workspace: string,
  name: string,
  count: number,
  overrides: Record<string, string>,
): Promise<number[]> {
  const scope = new Scope();
  try {
    const root = path.join(workspace, name, 'logs');
    const agents = agentAddresses(LATENCY_AGENTS, SEEDS.latency);
    writeLogTree(root, LATENCY_INITIAL_LOGS, agents, SEEDS.latency);
    const server = await startServer(scope);
    const settings = apiSettings(
      { logDir: root, stateFile: path.join(workspace, name, 'state.json'), apiUrl: server.url },
      overrides,
    );
    const daemon = startDaemon(scope, settings);

    await waitUntil(
      () => server.accepted.length >= LATENCY_INITIAL_LOGS,
      60_000,
      `the first ${LATENCY_INITIAL_LOGS} attestations`,
      daemon,
    );
    await sleep(LATENCY_SETTLE_MS);

    const random = seededRandom(SEEDS.latency + 1);
    const written: Array<{ agent: string; jobId: string; atMs: number }> = [];
    const firstWriteAt = Date.now();
    for (let index = 0; index < count; index += 1) {
      await sleep(Math.max(0, firstWriteAt + index * LATENCY_WRITE_GAP_MS - Date.now()));
      const agent = agents[index % agents.length] ?? '';
      const jobId = String(100_000 + index);
      writeJobLog(root, agent, jobId, 1, Date.now(), random);
      written.push({ agent, jobId, atMs: Date.now() });
    }

    // Polling alone finds a file within one interval; the margin covers a cycle's own work.
    const pollIntervalMs = Number(
      settings.TELEMETRY_POLL_INTERVAL_MS ?? DEFAULTS.TELEMETRY_POLL_INTERVAL_MS,
    );
    await waitUntil(
      () => server.accepted.length >= LATENCY_INITIAL_LOGS + count,
      2 * pollIntervalMs + 30_000,
      `${count} new attestations`,
      daemon,
    );

    return written.map((file) => {
      const record = server.accepted.find(
        (accepted) =>
          accepted.attestation.user === file.agent && accepted.attestation.jobId === file.jobId,
      );
      if (record === undefined) throw new Error(`job ${file.agent}/${file.jobId} was not accepted`);
      return record.receivedAt - file.atMs;
    });
  } finally {
    await scope.close();
  }
}

async function latencyCase(workspace: string, options: BenchOptions): Promise<CaseResult[]> {
  const pollIntervalMs = Number(DEFAULTS.TELEMETRY_POLL_INTERVAL_MS);
  const count = options.latencyFiles;
  const list = (values: number[]): string => values.map((ms) => Math.round(ms)).join(', ');

  const latencies = await measureLatencies(workspace, 'latency-watch', count, {});
  report(2, `daemon (defaults, TELEMETRY_WATCH=true) write → accepted, ms: ${list(latencies)}`);

  const polled = await measureLatencies(workspace, 'latency-poll', count, {
    TELEMETRY_WATCH: 'false',
  });
  report(2, `daemon with TELEMETRY_WATCH=false (polling only), ms: ${list(polled)}`);

  const daemonMedian = median(latencies);
  const expectedPolling = pollIntervalMs / 2;
  report(
    2,
    `baseline: a polling-only daemon averages half of TELEMETRY_POLL_INTERVAL_MS=${pollIntervalMs} ` +
      `(computed: ${formatMs(expectedPolling)}, up to ${formatMs(pollIntervalMs)}); measured ` +
      `with TELEMETRY_WATCH=false above: median ${formatMs(median(polled))}, max ` +
      `${formatMs(Math.max(...polled))}`,
  );
  return [
    {
      id: '2',
      title: `Latency, new log → accepted (${count} files, 1 s apart)`,
      daemon: `median ${formatMs(daemonMedian)}, max ${formatMs(Math.max(...latencies))}`,
      baseline: `${formatMs(expectedPolling)} (half the ${pollIntervalMs} ms poll interval, computed)`,
      ratio: `${formatRatio(expectedPolling / daemonMedian)} lower`,
      goal: 'median < 1 s',
      met: daemonMedian < 1_000,
    },
  ];
}

// ---------------------------------------------------------------------------------------------
// Case 3: contract backlog.

/**
 * Baseline: sends `count` attestations with a plain ethers loop that waits for each
 * receipt before the next send. Returns the blocks that carried them.
 */
async function sendOnePerBlock(
  chain: Chain,
  oracleAddress: string,
  count: number,
): Promise<{ blocks: Set<number>; seconds: number }> {
  const sender = new Wallet(BASELINE_SENDER_KEY, chain.provider);
  const oracle = new Contract(oracleAddress, ORACLE_ABI, sender);
  const domain = attestationDomain(chain.chainId, oracleAddress);
  const users = agentAddresses(count, SEEDS.contractSample);
  const deadline = (await latestTimestamp(chain)) + 3_600n;
  const blocks = new Set<number>();
  const started = performance.now();

  for (const [index, user] of users.entries()) {
    const attestation: Attestation = {
      jobId: BigInt(900_000 + index),
      user,
      energy: 1_000n,
      degeneracy: 1n,
      epochId: deadline / 86_400n,
      role: 2,
      nonce: 1n,
      deadline,
      uPre: 1_000n,
      uPost: 1_000n,
      value: 1_000_000n,
    };
    const signature = await signAttestation(SIGNER, domain, attestation);
    const verify = oracle.getFunction('verify');
    const transaction = (await verify(attestation, signature)) as ContractTransactionResponse;
    const receipt = await withTimeout(transaction.wait(), 30_000, 'a baseline receipt');
    if (receipt?.status !== 1) throw new Error(`baseline transaction ${transaction.hash} failed`);
    blocks.add(receipt.blockNumber);
  }
  return { blocks, seconds: (performance.now() - started) / 1000 };
}

/**
 * Prints how full the blocks were and how many blocks apart two revisions of one agent
 * landed. The daemon sends one agent's revisions one at a time, each after the receipt of
 * the one before, so an agent with R revisions needs at least R blocks.
 */
function reportBlockUse(acceptances: ReadonlyArray<{ user: string; blockNumber: number }>): void {
  const perBlock = new Map<number, number>();
  const byAgent = new Map<string, number[]>();
  for (const { user, blockNumber } of acceptances) {
    perBlock.set(blockNumber, (perBlock.get(blockNumber) ?? 0) + 1);
    byAgent.set(user, [...(byAgent.get(user) ?? []), blockNumber]);
  }
  const counts = [...perBlock.values()];
  report(
    3,
    `attestations per block: median ${median(counts)}, max ${Math.max(...counts)}, ` +
      `agents with work ${byAgent.size}`,
  );

  const gaps = new Map<number, number>();
  for (const blocks of byAgent.values()) {
    blocks.sort((a, b) => a - b);
    for (let index = 1; index < blocks.length; index += 1) {
      const gap = (blocks[index] ?? 0) - (blocks[index - 1] ?? 0);
      gaps.set(gap, (gaps.get(gap) ?? 0) + 1);
    }
  }
  const histogram = [...gaps]
    .sort((a, b) => a[0] - b[0])
    .map(([gap, count]) => `${gap} block${gap === 1 ? '' : 's'}: ${count}`)
    .join(', ');
  report(3, `blocks between two revisions of one agent: ${histogram}`);
}

async function contractBacklogCase(
  workspace: string,
  options: BenchOptions,
): Promise<CaseResult[]> {
  const scope = new Scope();
  try {
    const revisions = options.contractRevisions;
    const chain = await startChain(scope);
    const oracle = await deployOracle(chain, { signers: [SIGNER.address] });
    report(3, `anvil with --block-time 1 at ${chain.rpcUrl}; oracle at ${oracle.address}`);

    const sampleFrom = await chain.provider.getBlockNumber();
    const sample = await sendOnePerBlock(chain, oracle.address, options.contractSample);
    const sampleAccepted = (await readAcceptances(chain, oracle.address, sampleFrom + 1)).length;
    if (sampleAccepted !== options.contractSample) {
      throw new Error(`baseline: ${sampleAccepted} of ${options.contractSample} were accepted`);
    }
    const blocksPerRevision = sample.blocks.size / options.contractSample;
    const baselineBlocks = Math.round(blocksPerRevision * revisions);
    report(
      3,
      `baseline sample: ${options.contractSample} revisions, one transaction awaited at a time, ` +
        `used ${sample.blocks.size} blocks in ${sample.seconds.toFixed(1)} s; extrapolated to ` +
        `${revisions} revisions: ${baselineBlocks} blocks, about ` +
        `${Math.round((sample.seconds / options.contractSample) * revisions)} s`,
    );

    const root = path.join(workspace, 'contract', 'logs');
    const agents = agentAddresses(options.contractAgents, SEEDS.contract);
    writeLogTree(root, revisions, agents, SEEDS.contract);
    const daemonFrom = await chain.provider.getBlockNumber();
    const started = performance.now();
    const daemon = startDaemon(scope, {
      TELEMETRY_MODE: 'contract',
      ENERGY_LOG_DIR: root,
      TELEMETRY_STATE_FILE: path.join(workspace, 'contract', 'state.json'),
      ENERGY_ORACLE_RPC_URL: chain.rpcUrl,
      ENERGY_ORACLE_ADDRESS: oracle.address,
      ENERGY_ORACLE_SIGNER_KEY: SIGNER.privateKey,
      TELEMETRY_MAX_BATCH: String(revisions),
      TELEMETRY_CONCURRENCY: String(CONTRACT_CONCURRENCY),
    });
    await waitUntil(
      () => daemon.messages('attestation accepted').length >= revisions,
      120_000 + revisions * 1_000,
      `${revisions} accepted attestations`,
      daemon,
    );
    const seconds = (performance.now() - started) / 1000;
    await daemon.stop();

    const acceptances = await readAcceptances(chain, oracle.address, daemonFrom + 1);
    const jobs = new Set(acceptances.map((acceptance) => `${acceptance.user}/${acceptance.jobId}`));
    if (acceptances.length !== revisions || jobs.size !== revisions) {
      throw new Error(
        `the chain has ${acceptances.length} acceptances of ${jobs.size} jobs, expected ${revisions} of each`,
      );
    }
    const blocks = new Set(acceptances.map((acceptance) => acceptance.blockNumber)).size;
    reportProcessWarnings(3, daemon);
    reportBlockUse(acceptances);
    report(
      3,
      `daemon (TELEMETRY_MAX_BATCH=${revisions}, TELEMETRY_CONCURRENCY=${CONTRACT_CONCURRENCY}): ` +
        `${revisions} revisions of ${options.contractAgents} agents in ${blocks} blocks, ` +
        `${seconds.toFixed(1)} s from start to the last acceptance, ` +
        `${(revisions / blocks).toFixed(1)} attestations per block`,
    );

    return [
      {
        id: '3',
        title: `Contract backlog, ${revisions} revisions / ${options.contractAgents} agents, 1 s blocks`,
        daemon: `${blocks} blocks (${seconds.toFixed(0)} s)`,
        baseline: `${baselineBlocks} blocks (extrapolated from ${sample.blocks.size} for ${options.contractSample})`,
        ratio: `${formatRatio(baselineBlocks / blocks)} fewer`,
        goal: '≥ 20× fewer blocks',
        met: baselineBlocks / blocks >= 20,
      },
    ];
  } finally {
    await scope.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Case 4: API backlog throughput.

interface BacklogRun {
  revisions: number;
  /** Accepted attestations per second, from the first request to the last acceptance. */
  perSecond: number;
  /** From the daemon's spawn to the last acceptance, start-up and first scan included. */
  wallSeconds: number;
  /** From the first request to the last acceptance, so start-up and module loading are left out. */
  daemonCpuSeconds: number;
  /** This process over the same span: the test server and the parsing of the daemon's log. */
  serverCpuSeconds: number;
}

async function runApiBacklog(
  workspace: string,
  name: string,
  root: string,
  revisions: number,
  concurrency: number | undefined,
): Promise<BacklogRun> {
  const scope = new Scope();
  try {
    const server = await startServer(scope, API_LATENCY_MS);
    const overrides: Record<string, string> = { TELEMETRY_MAX_BATCH: String(revisions) };
    if (concurrency !== undefined) overrides.TELEMETRY_CONCURRENCY = String(concurrency);
    const settings = apiSettings(
      { logDir: root, stateFile: path.join(workspace, name, 'state.json'), apiUrl: server.url },
      overrides,
    );

    const started = Date.now();
    const daemon = startDaemon(scope, settings);
    await waitUntil(() => server.requests.length > 0, 60_000, 'the first request', daemon);
    // Sampled within one poll of the first request, so at most WAIT_POLL_MS of work is lost.
    const daemonCpuAtFirst = procCpuSeconds(daemon.pid);
    const serverCpuAtFirst = process.cpuUsage();
    await waitUntil(
      () => server.accepted.length >= revisions,
      60_000 + revisions * (API_LATENCY_MS * 4),
      `${revisions} accepted attestations`,
      daemon,
    );
    const daemonCpuSeconds = procCpuSeconds(daemon.pid) - daemonCpuAtFirst;
    const serverCpuSeconds = benchCpuSeconds(serverCpuAtFirst);
    await daemon.stop();
    reportProcessWarnings(4, daemon);
    if (server.accepted.length !== revisions) {
      throw new Error(`the server accepted ${server.accepted.length}, expected ${revisions}`);
    }

    const firstRequestAt = server.requests[0]?.at ?? started;
    const lastAcceptedAt = server.accepted[server.accepted.length - 1]?.receivedAt ?? started;
    return {
      revisions,
      perSecond: revisions / Math.max((lastAcceptedAt - firstRequestAt) / 1000, 0.001),
      wallSeconds: (lastAcceptedAt - started) / 1000,
      daemonCpuSeconds,
      serverCpuSeconds,
    };
  } finally {
    await scope.close();
  }
}

function describeRun(run: BacklogRun): string {
  const perAttestation = (seconds: number): string =>
    `${((seconds / run.revisions) * 1000).toFixed(2)} ms`;
  return (
    `${run.revisions} in ${run.wallSeconds.toFixed(1)} s from spawn, ${formatRate(run.perSecond)} ` +
    `from first request to last acceptance; CPU per attestation: daemon ` +
    `${perAttestation(run.daemonCpuSeconds)}, test server ${perAttestation(run.serverCpuSeconds)}`
  );
}

async function apiBacklogCase(workspace: string, options: BenchOptions): Promise<CaseResult[]> {
  const agents = agentAddresses(options.apiAgents, SEEDS.api);
  const trees = {
    full: path.join(workspace, 'api', 'full-logs'),
    baseline: path.join(workspace, 'api', 'baseline-logs'),
    table: path.join(workspace, 'api', 'table-logs'),
  };
  writeLogTree(trees.full, options.apiRevisions, agents, SEEDS.api);
  writeLogTree(trees.baseline, options.apiBaselineRevisions, agents, SEEDS.api);
  writeLogTree(trees.table, options.concurrencyRevisions, agents, SEEDS.api);
  const defaultConcurrency = Number(DEFAULTS.TELEMETRY_CONCURRENCY);
  report(
    4,
    `test server answers after ${API_LATENCY_MS} ms; TELEMETRY_MAX_BATCH = revisions, so one cycle takes the whole backlog`,
  );

  const full = await runApiBacklog(
    workspace,
    'api-full',
    trees.full,
    options.apiRevisions,
    undefined,
  );
  report(4, `daemon, default TELEMETRY_CONCURRENCY=${defaultConcurrency}: ${describeRun(full)}`);
  const baseline = await runApiBacklog(
    workspace,
    'api-baseline',
    trees.baseline,
    options.apiBaselineRevisions,
    1,
  );
  report(4, `baseline, TELEMETRY_CONCURRENCY=1: ${describeRun(baseline)}`);

  report(
    4,
    `concurrency table, ${options.concurrencyRevisions} revisions over ${options.apiAgents} agents:`,
  );
  report(4, '  TELEMETRY_CONCURRENCY | attestations/s | daemon CPU ms each | server CPU ms each');
  for (const level of options.concurrencyLevels) {
    const run = await runApiBacklog(
      workspace,
      `api-table-${level}`,
      trees.table,
      options.concurrencyRevisions,
      level,
    );
    const msPerAttestation = (seconds: number): string =>
      ((seconds / run.revisions) * 1000).toFixed(2);
    report(
      4,
      `  ${String(level).padStart(21)} | ${run.perSecond.toFixed(1).padStart(14)} | ` +
        `${msPerAttestation(run.daemonCpuSeconds).padStart(18)} | ${msPerAttestation(run.serverCpuSeconds).padStart(18)}`,
    );
  }

  const ratio = full.perSecond / baseline.perSecond;
  return [
    {
      id: '4',
      title: `API backlog, ${options.apiRevisions} revisions / ${options.apiAgents} agents, ${API_LATENCY_MS} ms server`,
      daemon: `${formatRate(full.perSecond)} (concurrency ${defaultConcurrency})`,
      baseline: `${formatRate(baseline.perSecond)} (concurrency 1, ${options.apiBaselineRevisions} revisions)`,
      ratio: `${formatRatio(ratio)} higher`,
      goal: '≥ 10× higher',
      met: ratio >= 10,
    },
  ];
}

// ---------------------------------------------------------------------------------------------
// Case 5: state bytes per accepted attestation.

/** Preloads `jobs` done records through the daemon's StateStore, spread over `agents`. */
async function preloadDoneRecords(
  stateFile: string,
  jobs: number,
  agents: string[],
): Promise<void> {
  const state = await StateStore.open(stateFile, SILENT_LOGGER);
  const lastUpdatedMs = Date.now() - 7 * 86_400_000;
  let writes: Array<Promise<void>> = [];
  try {
    for (let index = 0; index < jobs; index += 1) {
      const agent = agents[index % agents.length] ?? '';
      const key = revisionKey(agent, String(1_000_000 + index));
      writes.push(
        state.recordDone(key, {
          lastUpdatedMs: lastUpdatedMs + index,
          fingerprint: index.toString(16).padStart(16, '0'),
          nonce: String(Math.floor(index / agents.length) + 1),
          reference: `att-${index + 1}`,
        }),
      );
      if (writes.length >= 5_000) {
        await Promise.all(writes);
        writes = [];
      }
    }
    await Promise.all(writes);
  } finally {
    await state.close();
  }
}

interface StateGrowth {
  bytesPerAttestation: number;
  fileGrowthPerAttestation: number;
  compacted: boolean;
  fileBytesBefore: number;
}

/**
 * Delivers `count` new attestations in process, through the daemon's own service and state
 * store, and measures the bytes written to a state file preloaded with `jobs` done records.
 */
async function measureStateGrowth(
  workspace: string,
  jobs: number,
  count: number,
): Promise<StateGrowth> {
  const scope = new Scope();
  try {
    const folder = path.join(workspace, `state-${jobs}`);
    const stateFile = path.join(folder, 'state.json');
    const root = path.join(folder, 'logs');
    const agents = agentAddresses(100, SEEDS.state);
    await preloadDoneRecords(stateFile, jobs, agents);
    writeLogTree(root, count, agents, SEEDS.state, 1);

    const server = await startServer(scope);
    const config = daemonConfig(
      apiSettings(
        { logDir: root, stateFile, apiUrl: server.url },
        { TELEMETRY_MAX_BATCH: String(count) },
      ),
    );
    const daemon = await createDaemon(config, SIGNER, SILENT_LOGGER);
    scope.add(() => daemon.close());
    await daemon.service.connect();
    // As in a running daemon: the folder watches let quiet cycles skip unchanged folders.
    daemon.service.watchLogs();

    // Read after open: opening may compact, which is not part of delivering.
    const bytesBefore = daemon.state.bytesWritten;
    const before = fs.statSync(stateFile);
    const deadline = Date.now() + 120_000 + count * 100;
    while (server.accepted.length < count) {
      if (Date.now() > deadline)
        throw new Error(`only ${server.accepted.length} of ${count} accepted in time`);
      const result = await daemon.service.runCycle();
      if (result.started === 0) await sleep(WAIT_POLL_MS);
    }
    const bytes = daemon.state.bytesWritten - bytesBefore;
    const after = fs.statSync(stateFile);

    return {
      bytesPerAttestation: bytes / count,
      fileGrowthPerAttestation: (after.size - before.size) / count,
      compacted: after.ino !== before.ino,
      fileBytesBefore: before.size,
    };
  } finally {
    await scope.close();
  }
}

async function stateBytesCase(workspace: string, options: BenchOptions): Promise<CaseResult[]> {
  const count = options.stateAttestations;
  const growth: Array<{ jobs: number; result: StateGrowth }> = [];
  for (const jobs of options.stateJobs) {
    const result = await measureStateGrowth(workspace, jobs, count);
    growth.push({ jobs, result });
    report(
      5,
      `${jobs} done jobs (state file ${result.fileBytesBefore} bytes): ` +
        `${result.bytesPerAttestation.toFixed(0)} bytes written per attestation (StateStore.bytesWritten), ` +
        `file grew ${result.fileGrowthPerAttestation.toFixed(0)} bytes per attestation, ` +
        `${result.compacted ? 'compacted during the run' : 'no compaction'}`,
    );
  }

  const first = growth[0];
  const last = growth[growth.length - 1];
  if (first === undefined || last === undefined) return [];
  const values = growth.map((entry) => entry.result.bytesPerAttestation);
  const spread = Math.max(...values) / Math.min(...values);
  report(
    5,
    `for comparison, a state file rewritten whole on every acceptance would write about ` +
      `${last.result.fileBytesBefore} bytes per attestation at ${last.jobs} jobs (computed, not measured)`,
  );
  return [
    {
      id: '5',
      title: `State bytes per accepted attestation (${count} delivered)`,
      daemon: `${last.result.bytesPerAttestation.toFixed(0)} B at ${last.jobs} jobs`,
      baseline: `${first.result.bytesPerAttestation.toFixed(0)} B at ${first.jobs} jobs`,
      ratio: `${formatRatio(spread)} apart`,
      goal: 'within 2× of each other',
      met: spread <= 2,
    },
  ];
}

// ---------------------------------------------------------------------------------------------
// Case 6: peak resident memory during the first scan.

/**
 * Starts the built daemon with a poll interval long enough for exactly one cycle, waits
 * until the state lock records that cycle, and returns the process's peak resident memory.
 */
async function peakMemoryOfFirstCycle(
  server: IngestServer,
  logDir: string,
  stateFile: string,
): Promise<{ peakBytes: number; secondsToCycle: number }> {
  const scope = new Scope();
  try {
    const started = performance.now();
    const daemon = startDaemon(
      scope,
      apiSettings(
        { logDir, stateFile, apiUrl: server.url },
        { TELEMETRY_POLL_INTERVAL_MS: String(SINGLE_CYCLE_POLL_MS) },
      ),
    );
    // The daemon logs nothing for a cycle without work, but the lock file's heartbeat
    // (every 10 s) carries the time of the last finished cycle.
    await waitUntil(
      () => readOwner(`${stateFile}.lock`)?.lastCycleAt !== undefined,
      300_000,
      'the first cycle to finish',
      daemon,
    );
    const peakBytes = procStatusBytes(daemon.pid, 'VmHWM');
    const secondsToCycle = (performance.now() - started) / 1000;
    await daemon.stop();
    return { peakBytes, secondsToCycle };
  } finally {
    await scope.close();
  }
}

async function peakMemoryCase(workspace: string, options: BenchOptions): Promise<CaseResult[]> {
  const scope = new Scope();
  try {
    const server = await startServer(scope);
    const paths = attestedTreePaths(workspace);
    const config = daemonConfig(
      apiSettings({ logDir: paths.root, stateFile: paths.stateFile, apiUrl: server.url }),
    );
    const tree = await attestedTree(workspace, options, config);
    const emptyRoot = path.join(workspace, 'empty', 'logs');
    fs.mkdirSync(emptyRoot, { recursive: true });

    const emptyState = path.join(workspace, 'empty', 'state.json');
    const empty = await peakMemoryOfFirstCycle(server, emptyRoot, emptyState);
    report(6, `daemon over an empty tree: VmHWM ${formatMegabytes(empty.peakBytes)}`);
    const full = await peakMemoryOfFirstCycle(server, tree.root, tree.stateFile);
    if (server.accepted.length > 0) throw new Error('the daemon sent attestations; none were due');

    const perLog = (full.peakBytes - empty.peakBytes) / tree.files;
    report(
      6,
      `daemon over ${tree.files} attested logs: VmHWM ${formatMegabytes(full.peakBytes)}, ` +
        `${perLog.toFixed(0)} bytes per log above the empty tree (first cycle seen in the lock ` +
        `file ${full.secondsToCycle.toFixed(1)} s after spawn; the heartbeat adds up to 10 s)`,
    );
    return [
      {
        id: '6',
        title: `Peak RSS (VmHWM) during the first scan of ${tree.files} logs`,
        daemon: formatMegabytes(full.peakBytes),
        baseline: `${formatMegabytes(empty.peakBytes)} (same daemon, empty tree)`,
        ratio: `${formatRatio(full.peakBytes / empty.peakBytes)} of empty`,
        goal: `< ${formatMegabytes(MEMORY_GOAL_BYTES)}`,
        met: full.peakBytes < MEMORY_GOAL_BYTES,
      },
    ];
  } finally {
    await scope.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Main.

const CASES: Record<number, (workspace: string, options: BenchOptions) => Promise<CaseResult[]>> = {
  1: idleCycleCase,
  2: latencyCase,
  3: contractBacklogCase,
  4: apiBacklogCase,
  5: stateBytesCase,
  6: peakMemoryCase,
};

/** Formats the 1, 5 and 15 minute load averages, because other work skews every figure. */
function formatLoad(): string {
  return os
    .loadavg()
    .map((load) => load.toFixed(2))
    .join(', ');
}

function printMachine(): void {
  const cpus = os.cpus();
  console.log(
    `machine: ${os.availableParallelism()} CPUs (${cpus[0]?.model ?? 'unknown model'}), ` +
      `${formatMegabytes(os.totalmem())} memory, node ${process.version}, ${os.type()} ${os.release()}`,
  );
}

function printOptions(options: BenchOptions): void {
  const flags = OPTION_SPECS.map((spec) => {
    const value = options[spec.key];
    return `${spec.flag} ${Array.isArray(value) ? value.join(',') : String(value)}`;
  });
  console.log(`sizes: ${flags.join(' ')}`);
}

async function runCases(options: BenchOptions, workspace: string): Promise<number> {
  const results: CaseResult[] = [];
  const failures: string[] = [];
  for (const id of CASE_IDS) {
    if (!options.only.includes(id)) continue;
    const run = CASES[id];
    if (run === undefined) continue;

    console.log(`\n# Case ${id}`);
    console.log(`[${id}] load average before: ${formatLoad()}`);
    const started = performance.now();
    try {
      results.push(...(await run(workspace, options)));
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      failures.push(`case ${id} failed: ${message}`);
      console.error(`[${id}] failed: ${message}`);
    }
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    console.log(`[${id}] took ${seconds} s; load average after: ${formatLoad()}`);
  }

  printSummary(results, failures);
  return failures.length > 0 ? 1 : 0;
}

/** Kills whatever is still running and removes the workspace: the last resort on any exit. */
function killEverything(workspace: { cleanup: () => void }): void {
  for (const scope of openScopes) scope.killNow();
  workspace.cleanup();
}

async function main(): Promise<number> {
  const options = parseOptions(process.argv.slice(2));
  if (options === 'help') {
    console.log(usage());
    return 0;
  }
  if (!fs.existsSync(ENTRY)) {
    throw new Error(
      `the daemon is not built (${ENTRY} is missing); run npx tsc -p apps/operator/tsconfig.json`,
    );
  }

  const workspace = temporaryFolder('operator-telemetry-bench');
  process.once('exit', () => killEverything(workspace));
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      console.error(`\n${signal}: stopping every daemon and server and removing ${workspace.path}`);
      void closeAll().finally(() => process.exit(130));
    });
  }
  const watchdog = setTimeout(() => {
    console.error(`the run exceeded --timeout-min ${options.timeoutMinutes}; stopping everything`);
    void closeAll().finally(() => process.exit(1));
  }, options.timeoutMinutes * 60_000);
  watchdog.unref();

  printMachine();
  printOptions(options);
  console.log(`data: ${workspace.path} (removed at the end)`);
  try {
    return await runCases(options, workspace.path);
  } finally {
    await closeAll();
    workspace.cleanup();
  }
}

async function closeAll(): Promise<void> {
  for (const scope of [...openScopes]) await scope.close();
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exitCode = 1;
  },
);
