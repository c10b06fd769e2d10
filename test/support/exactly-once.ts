import { setTimeout as sleep } from 'node:timers/promises';
import path from 'node:path';
import { Wallet, getAddress } from 'ethers';
import type { Acceptance, Chain, DeployedOracle, StartAnvilOptions } from './chain';
import { ANVIL_KEYS, deployOracle, readAcceptances, startAnvil } from './chain';
import type { LogLine } from './daemon-process';
import { DaemonProcess, temporaryFolder } from './daemon-process';
import type { AcceptedRecord, FaultOptions, IngestServer } from './ingest-server';
import { startIngestServer } from './ingest-server';
import { addStage, agentAddresses, logPath, seededRandom, writeJobLog } from './log-factory';

/**
 * Exactly-once checks for process-level tests: seeded job revisions spread over agents, a
 * count of how often the chain or the ingestion server accepted each of them, and a crash
 * loop that kills the daemon with SIGKILL at seeded random moments.
 *
 * A revision is identified by (user, jobId, degeneracy). Every new revision of a job adds
 * a stage, and the attestation's degeneracy is the stage count, so it distinguishes the
 * revisions of one job.
 */

export type TargetMode = 'contract' | 'api';

export interface RevisionId {
  user: string;
  jobId: string;
  degeneracy: string;
}

/** Daemon settings that keep process-level tests short. */
export const FAST_SETTINGS: Readonly<Record<string, string>> = {
  TELEMETRY_POLL_INTERVAL_MS: '200',
  TELEMETRY_RETRY_DELAY_MS: '50',
  TELEMETRY_MAX_BATCH: '50',
  TELEMETRY_CONCURRENCY: '16',
};

/** The EIP-712 verifyingContract of API-mode targets. Any address works because the API reads no chain. */
export const API_ORACLE_ADDRESS = '0x00000000000000000000000000000000000E0e0E';
export const API_CHAIN_ID = 31337n;
const API_TOKEN = 'exactly-once-test-token';

/** Anvil's second default account: funded on every fresh anvil, and not the oracle's owner. */
export const SIGNER = new Wallet(ANVIL_KEYS[1]!);

/** Variable that fixes the seed of a crash run, to repeat a failure. */
export const SEED_VARIABLE = 'EXACTLY_ONCE_SEED';

/** Returns the seed from EXACTLY_ONCE_SEED, or a new random one. */
export function chooseSeed(): number {
  const fixed = process.env[SEED_VARIABLE];
  if (fixed !== undefined && fixed !== '') {
    const seed = Number(fixed);
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
      throw new RangeError(
        `${SEED_VARIABLE} is ${fixed}: expected a whole number from 0 to 2^32-1`,
      );
    }
    return seed;
  }
  return Math.floor(Math.random() * 0x100000000);
}

/** Returns `user/jobId#degeneracy`, the key that duplicates and missing revisions are listed by. */
export function revisionName(revision: RevisionId): string {
  return `${revision.user}/${revision.jobId}#${revision.degeneracy}`;
}

function normalise(user: string, jobId: string | bigint, degeneracy: string | bigint): RevisionId {
  return {
    user: getAddress(user),
    jobId: BigInt(jobId).toString(),
    degeneracy: BigInt(degeneracy).toString(),
  };
}

/** Maps the oracle's AttestationAccepted events to revisions. */
export function chainDeliveries(acceptances: readonly Acceptance[]): RevisionId[] {
  return acceptances.map((acceptance) =>
    normalise(acceptance.att.user, acceptance.att.jobId, acceptance.att.degeneracy),
  );
}

/** Maps the ingestion server's accepted records to revisions. */
export function serverDeliveries(accepted: readonly AcceptedRecord[]): RevisionId[] {
  return accepted.map((record) =>
    normalise(
      record.attestation.user ?? '',
      record.attestation.jobId ?? '',
      record.attestation.degeneracy ?? '',
    ),
  );
}

// ---------------------------------------------------------------------------------------------
// Seeded revisions.

export interface RevisionPlanOptions {
  /** Folder the logs go to, as `<root>/<agent>/<jobId>.json`. */
  root: string;
  agents: number;
  /** Revisions in all. One in five is a second revision of a job (one more stage). */
  revisions: number;
  seed: number;
}

interface PlannedJob {
  agent: string;
  jobId: string;
  file: string;
  stages: number;
  written: boolean;
  /** The job gets one more stage once its first revision is accepted. */
  secondRevision: boolean;
}

/**
 * Job logs for a fixed number of revisions. Each job's first revision is written by
 * `writeJobs`, and a second revision is added only after the target accepted the first, so
 * that every revision stays in the logs until it is delivered. A daemon that reads only the
 * newer revision may rightly skip the older one.
 */
export class RevisionPlan {
  /** Every revision written so far, in the order written. */
  readonly written: RevisionId[] = [];
  readonly total: number;
  private readonly root: string;
  private readonly jobs: PlannedJob[] = [];
  private readonly random: () => number;

  constructor(options: RevisionPlanOptions) {
    if (options.revisions < 2 || options.agents < 1) {
      throw new RangeError('a revision plan needs at least 2 revisions and 1 agent');
    }
    this.total = options.revisions;
    this.root = options.root;
    this.random = seededRandom(options.seed);

    const secondRevisions = Math.floor(options.revisions / 5);
    const jobCount = options.revisions - secondRevisions;
    const agents = agentAddresses(options.agents, options.seed);
    const chosen = this.chooseJobs(jobCount, secondRevisions);
    for (let index = 0; index < jobCount; index += 1) {
      const agent = agents[index % agents.length]!;
      const jobId = String(1000 + index);
      this.jobs.push({
        agent,
        jobId,
        file: logPath(options.root, agent, jobId),
        stages: 1 + Math.floor(this.random() * 3),
        written: false,
        secondRevision: chosen.has(index),
      });
    }
  }

  /** Jobs whose first revision is not written yet. */
  get unwrittenJobs(): number {
    return this.jobs.filter((job) => !job.written).length;
  }

  /** True once every planned revision is in the logs. */
  get complete(): boolean {
    return this.written.length === this.total;
  }

  /** Writes the first revision of up to `count` more jobs. Returns how many it wrote. */
  writeJobs(count: number): number {
    let added = 0;
    // Times in the recent past, rising, so that the daemon sends older jobs first.
    const baseMs = Date.now() - 60_000;
    for (const job of this.jobs) {
      if (added === count) break;
      if (job.written) continue;
      writeJobLog(this.root, job.agent, job.jobId, job.stages, baseMs + added, this.random);
      job.written = true;
      this.written.push(normalise(job.agent, job.jobId, BigInt(job.stages)));
      added += 1;
    }
    return added;
  }

  /**
   * Adds a stage to every job due a second revision whose first revision is among
   * `delivered`. Returns how many revisions it added.
   */
  addSecondRevisions(delivered: readonly RevisionId[]): number {
    const accepted = new Set(delivered.map(revisionName));
    let added = 0;
    for (const job of this.jobs) {
      if (!job.written || !job.secondRevision) continue;
      if (!accepted.has(revisionName(normalise(job.agent, job.jobId, BigInt(job.stages))))) {
        continue;
      }
      addStage(job.file, Date.now(), this.random);
      job.stages += 1;
      job.secondRevision = false;
      this.written.push(normalise(job.agent, job.jobId, BigInt(job.stages)));
      added += 1;
    }
    return added;
  }

  private chooseJobs(jobCount: number, count: number): Set<number> {
    const indexes = Array.from({ length: jobCount }, (_, index) => index);
    for (let index = indexes.length - 1; index > 0; index -= 1) {
      const other = Math.floor(this.random() * (index + 1));
      [indexes[index], indexes[other]] = [indexes[other]!, indexes[index]!];
    }
    return new Set(indexes.slice(0, count));
  }
}

// ---------------------------------------------------------------------------------------------
// Counting deliveries.

export interface DeliveryReport {
  /** Revisions written to the logs. */
  expected: number;
  /** Acceptances counted at the target. */
  acceptances: number;
  /** Written revisions accepted exactly once. */
  exactlyOnce: number;
  duplicates: Array<{ revision: RevisionId; count: number }>;
  missing: RevisionId[];
  /** Accepted revisions that were never written, such as a revision with the wrong stage count. */
  unexpected: RevisionId[];
}

/** Counts the acceptances of each expected revision. */
export function countDeliveries(
  expected: readonly RevisionId[],
  delivered: readonly RevisionId[],
): DeliveryReport {
  const counts = new Map<string, { revision: RevisionId; count: number }>();
  for (const revision of delivered) {
    const name = revisionName(revision);
    const entry = counts.get(name) ?? { revision, count: 0 };
    entry.count += 1;
    counts.set(name, entry);
  }

  const expectedNames = new Set(expected.map(revisionName));
  const entries = [...counts.values()];
  return {
    expected: expected.length,
    acceptances: delivered.length,
    exactlyOnce: expected.filter((revision) => counts.get(revisionName(revision))?.count === 1)
      .length,
    duplicates: entries.filter((entry) => entry.count > 1),
    missing: expected.filter((revision) => !counts.has(revisionName(revision))),
    unexpected: entries
      .filter((entry) => !expectedNames.has(revisionName(entry.revision)))
      .map((entry) => entry.revision),
  };
}

/** Formats the totals on one line, then lists duplicated, missing and unexpected revisions (20 of each at most). */
export function formatReport(report: DeliveryReport): string {
  const lines = [
    `${report.expected} revisions, ${report.acceptances} acceptances: ` +
      `${report.duplicates.length} duplicated, ${report.missing.length} missing, ` +
      `${report.unexpected.length} unexpected`,
  ];
  for (const { revision, count } of report.duplicates.slice(0, 20)) {
    lines.push(`  duplicated ${count} times: ${revisionName(revision)}`);
  }
  for (const revision of report.missing.slice(0, 20)) {
    lines.push(`  missing: ${revisionName(revision)}`);
  }
  for (const revision of report.unexpected.slice(0, 20)) {
    lines.push(`  unexpected: ${revisionName(revision)}`);
  }
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------
// Targets.

export interface DeliveryTarget {
  mode: TargetMode;
  /** Daemon variables that point it at this target and give it the signer key. */
  env: Record<string, string>;
  /** Every acceptance so far, as revisions, in acceptance order. */
  deliveries(): Promise<RevisionId[]>;
  /** Describes the traffic the target saw, for the run's last progress line. */
  describeTraffic?(): string;
  close(): Promise<void>;
}

export interface ContractTarget extends DeliveryTarget {
  chain: Chain;
  oracle: DeployedOracle;
}

export interface ApiTarget extends DeliveryTarget {
  server: IngestServer;
}

/** Starts anvil on 127.0.0.1 with the oracle deployed and SIGNER authorised. */
export async function startContractTarget(
  options: StartAnvilOptions = {},
): Promise<ContractTarget> {
  const chain = await startAnvil(options);
  let oracle: DeployedOracle;
  try {
    oracle = await deployOracle(chain, { signers: [SIGNER.address] });
  } catch (error) {
    await chain.stop();
    throw error;
  }

  return {
    mode: 'contract',
    chain,
    oracle,
    env: {
      ENERGY_ORACLE_RPC_URL: chain.rpcUrl,
      ENERGY_ORACLE_ADDRESS: oracle.address,
      ENERGY_ORACLE_SIGNER_KEY: SIGNER.privateKey,
    },
    deliveries: chainReader(chain, oracle.address),
    close: () => chain.stop(),
  };
}

/**
 * Returns a reader of the oracle's acceptances that queries only blocks after the last
 * event it saw, because decoding every event of a long run several times a second slows
 * the daemon under test on a small machine. Assumes that no block is re-organised.
 */
function chainReader(chain: Chain, address: string): () => Promise<RevisionId[]> {
  const seen: RevisionId[] = [];
  let fromBlock = 0;
  return async () => {
    // anvil rejects a fromBlock above the latest block instead of returning no logs.
    if (fromBlock > (await chain.provider.getBlockNumber())) return [...seen];
    const acceptances = await readAcceptances(chain, address, fromBlock);
    seen.push(...chainDeliveries(acceptances));

    // The result holds every block up to the latest one in full, so the blocks after its
    // last event contain no event that was missed.
    const last = acceptances.at(-1);
    if (last !== undefined) fromBlock = last.blockNumber + 1;
    return [...seen];
  };
}

/** Starts the ingestion server on 127.0.0.1 with SIGNER authorised and the given faults. */
export async function startApiTarget(faults: FaultOptions = {}): Promise<ApiTarget> {
  const server = await startIngestServer({
    chainId: API_CHAIN_ID,
    verifyingContract: API_ORACLE_ADDRESS,
    signers: [SIGNER.address],
    token: API_TOKEN,
    faults,
  });

  return {
    mode: 'api',
    server,
    env: {
      ENERGY_ORACLE_API_URL: server.url,
      ENERGY_ORACLE_API_TOKEN: API_TOKEN,
      ENERGY_ORACLE_CHAIN_ID: API_CHAIN_ID.toString(),
      ENERGY_ORACLE_ADDRESS: API_ORACLE_ADDRESS,
      ENERGY_ORACLE_SIGNER_KEY: SIGNER.privateKey,
    },
    deliveries: () => Promise.resolve(serverDeliveries(server.accepted)),
    describeTraffic: () => describeRequests(server),
    close: () => server.close(),
  };
}

/** Counts the server's requests by outcome, such as `412 requests: 201 ×230, 500 ×41, reset ×20`. */
function describeRequests(server: IngestServer): string {
  const counts = new Map<string, number>();
  for (const request of server.requests) {
    const status = String(request.status);
    counts.set(status, (counts.get(status) ?? 0) + 1);
  }
  const parts = [...counts].map(([status, count]) => `${status} ×${count}`);
  return `${server.requests.length} requests: ${parts.join(', ')}`;
}

/**
 * Returns the daemon variables for a test folder: FAST_SETTINGS, the target's variables,
 * logs in `<folder>/logs` and the state file `<folder>/state/state.json`, then `extra`.
 */
export function daemonEnv(
  target: Pick<DeliveryTarget, 'env'>,
  folder: string,
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    ...FAST_SETTINGS,
    ...target.env,
    ENERGY_LOG_DIR: path.join(folder, 'logs'),
    TELEMETRY_STATE_FILE: path.join(folder, 'state', 'state.json'),
    ...extra,
  };
}

/**
 * Polls the target every 200 ms, adding second revisions as their first ones are accepted,
 * until every planned revision is written and accepted. Returns false when `timeoutMs`
 * passes first, or when `daemon` exits.
 */
export async function deliverAll(
  target: Pick<DeliveryTarget, 'deliveries'>,
  plan: RevisionPlan,
  timeoutMs: number,
  daemon?: DaemonProcess,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && (daemon === undefined || daemon.running)) {
    const delivered = await target.deliveries();
    plan.addSecondRevisions(delivered);
    const report = countDeliveries(plan.written, delivered);
    if (plan.complete && report.missing.length === 0) return true;
    await sleep(FINAL_POLL_MS);
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// The crash loop.

/** Faults of the API server during crash runs: lost responses, resets and errors. */
export const CRASH_API_FAULTS: Readonly<FaultOptions> = {
  acceptThenFailRate: 0.1,
  resetRate: 0.05,
  errorRate: 0.1,
};

const MIN_KILL_DELAY_MS = 100;
const MAX_KILL_DELAY_MS = 1500;
/** Time a daemon gets to write its first log line before it is killed anyway. */
const FIRST_LINE_TIMEOUT_MS = 15_000;
/** After the last revision is accepted, the final run goes on this long so that a late duplicate is counted. */
export const SETTLE_MS = 1500;
const FINAL_POLL_MS = 200;

export interface CrashRunOptions {
  mode: TargetMode;
  kills: number;
  revisions: number;
  seed: number;
  /** Default 40. */
  agents?: number;
  /** Limit of the final run without kills. Default 60 s. */
  finalTimeoutMs?: number;
  /** Called with one line after every kill and at the end. */
  onProgress?: (message: string) => void;
}

export interface DaemonRun {
  /** 1-based; the final run is the last one. */
  index: number;
  pid: number;
  /** Time from spawn to exit. */
  lifetimeMs: number;
  /** True when the loop ended the run with SIGKILL. */
  killed: boolean;
  /** True when the run logged `connected`, so that a kill hit it while it could deliver. */
  connected: boolean;
  /** `attestation accepted` lines of this run. */
  accepted: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  lines: LogLine[];
  tail: string;
}

export interface CrashRunResult {
  seed: number;
  report: DeliveryReport;
  runs: DaemonRun[];
  /** Runs of the kill loop that exited before their kill: a crash or a refused start. */
  earlyExits: DaemonRun[];
  /** The last run, stopped with SIGTERM once everything was accepted or its time ran out. */
  finalRun: DaemonRun | undefined;
  /** False when the final run's time ran out or it exited before every revision was accepted. */
  finished: boolean;
  durationMs: number;
}

/**
 * Runs the daemon against a fresh target and kills it with SIGKILL `kills` times, each a
 * seeded random 100–1500 ms after its first log line. A last run without kills goes on
 * until every revision is accepted. Returns the acceptances counted per revision.
 *
 * The first revisions of the jobs are written in slices over the first three quarters of
 * the kills, so that most kills hit a daemon with work in flight. Second revisions follow
 * their first one's acceptance. In API mode the server injects CRASH_API_FAULTS.
 */
export async function runCrashScenario(options: CrashRunOptions): Promise<CrashRunResult> {
  const startedAt = Date.now();
  const progress = options.onProgress ?? (() => undefined);
  const random = seededRandom(options.seed ^ 0x5bd1e995);
  const folder = temporaryFolder(`exactly-once-${options.mode}`);
  const plan = new RevisionPlan({
    root: path.join(folder.path, 'logs'),
    agents: options.agents ?? 40,
    revisions: options.revisions,
    seed: options.seed,
  });
  const runs: DaemonRun[] = [];
  let daemon: DaemonProcess | undefined;
  let target: DeliveryTarget | undefined;

  try {
    target =
      options.mode === 'contract'
        ? await startContractTarget()
        : await startApiTarget({ ...CRASH_API_FAULTS, seed: options.seed });
    const env = daemonEnv(target, folder.path);

    const writingKills = Math.max(1, Math.ceil((options.kills * 3) / 4));
    const slice = Math.ceil(plan.unwrittenJobs / writingKills);
    for (let kill = 1; kill <= options.kills; kill += 1) {
      plan.writeJobs(slice);
      plan.addSecondRevisions(await target.deliveries());

      const delayMs = MIN_KILL_DELAY_MS + random() * (MAX_KILL_DELAY_MS - MIN_KILL_DELAY_MS);
      const spawnedAt = Date.now();
      daemon = new DaemonProcess(env);
      const exitedEarly = await waitThenRace(daemon, delayMs);
      if (!exitedEarly) await daemon.kill();
      runs.push(await finishRun(daemon, runs.length + 1, spawnedAt, !exitedEarly));
      daemon = undefined;

      const run = runs.at(-1)!;
      const delivered = await target.deliveries();
      progress(
        `kill ${kill}/${options.kills} after ${Math.round(delayMs)} ms ` +
          `(${run.connected ? `connected, ${run.accepted} accepted in this run` : 'before connecting'}): ` +
          `${delivered.length} acceptances of ${plan.written.length} revisions written` +
          (exitedEarly ? `; the daemon had exited by itself (code ${run.code})` : ''),
      );
    }

    plan.writeJobs(plan.unwrittenJobs);
    const spawnedAt = Date.now();
    daemon = new DaemonProcess(env);
    const finished = await deliverAll(target, plan, options.finalTimeoutMs ?? 60_000, daemon);
    await sleep(SETTLE_MS);
    await daemon.stop();
    const finalRun = await finishRun(daemon, runs.length + 1, spawnedAt, false);
    runs.push(finalRun);
    daemon = undefined;

    const report = countDeliveries(plan.written, await target.deliveries());
    const result: CrashRunResult = {
      seed: options.seed,
      report,
      runs,
      earlyExits: runs.filter((run) => run !== finalRun && !run.killed),
      finalRun,
      finished: finished && plan.complete,
      durationMs: Date.now() - startedAt,
    };
    const connectedKills = runs.filter((run) => run.killed && run.connected).length;
    progress(
      `${runs.length - 1} kills (${connectedKills} after the daemon connected), ` +
        `final run ${finished ? 'finished' : 'timed out'}, ` +
        `${Math.round(result.durationMs / 1000)} s in all; ${formatReport(report)}` +
        (target.describeTraffic === undefined ? '' : `; ${target.describeTraffic()}`),
    );
    return result;
  } finally {
    if (daemon !== undefined) await daemon.kill();
    await target?.close();
    folder.cleanup();
  }
}

/**
 * Waits for the daemon's first log line, then `delayMs`. Returns true when the daemon
 * exited by itself before that.
 *
 * The delay counts from the first log line, which the daemon writes once its state file is
 * open and before it connects, and not from the spawn. On a loaded 2-core machine, Node took
 * 1.2 to 2 s from the spawn to that line, so delays counted from the spawn hit only the
 * module loading there.
 */
async function waitThenRace(daemon: DaemonProcess, delayMs: number): Promise<boolean> {
  try {
    await daemon.waitFor((lines) => lines.length > 0, FIRST_LINE_TIMEOUT_MS, 'the first log line');
  } catch {
    // Exited before the first line, or still silent after the timeout: killed below if running.
    return !daemon.running;
  }
  return Promise.race([daemon.exited.then(() => true), sleep(delayMs).then(() => false)]);
}

async function finishRun(
  daemon: DaemonProcess,
  index: number,
  spawnedAt: number,
  killed: boolean,
): Promise<DaemonRun> {
  const { code, signal } = await daemon.exited;
  return {
    index,
    pid: daemon.pid,
    lifetimeMs: Date.now() - spawnedAt,
    killed,
    connected: daemon.lines.some((line) => line.msg === 'connected'),
    accepted: daemon.messages('attestation accepted').length,
    code,
    signal,
    lines: daemon.lines,
    tail: daemon.tail(),
  };
}

/**
 * Returns the daemon's log lines about one revision's job across all runs, as
 * `run N: level msg {fields}` lines, to explain a duplicate or a missing revision.
 */
export function linesAbout(runs: readonly DaemonRun[], revision: RevisionId, limit = 40): string {
  const found: string[] = [];
  for (const run of runs) {
    for (const line of run.lines) {
      if (line.agent !== revision.user || line.jobId !== revision.jobId) continue;
      const { level, msg, time: _time, pid: _pid, name: _name, agent: _agent, ...fields } = line;
      found.push(`run ${run.index}: ${level} ${msg} ${JSON.stringify(fields)}`);
    }
  }
  return found.slice(-limit).join('\n');
}

/** Describes every duplicated and missing revision with the daemon's lines about it. */
export function explainFailures(result: CrashRunResult, limit = 5): string {
  const sections = [formatReport(result.report)];
  const revisions = [
    ...result.report.duplicates.map((entry) => entry.revision),
    ...result.report.missing,
  ];
  for (const revision of revisions.slice(0, limit)) {
    sections.push(`--- ${revisionName(revision)}\n${linesAbout(result.runs, revision)}`);
  }
  for (const run of result.earlyExits.slice(0, limit)) {
    sections.push(`--- run ${run.index} exited by itself (code ${run.code})\n${run.tail}`);
  }
  return sections.join('\n');
}
