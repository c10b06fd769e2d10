import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Chain, DeployedOracle } from '../support/chain';
import { deployOracle, readAcceptances, startAnvil } from '../support/chain';
import type { LogLine } from '../support/daemon-process';
import { DaemonProcess, temporaryFolder } from '../support/daemon-process';
import type { ApiTarget, DeliveryTarget, RevisionId } from '../support/exactly-once';
import {
  RevisionPlan,
  SETTLE_MS,
  SIGNER,
  chainDeliveries,
  chooseSeed,
  countDeliveries,
  daemonEnv,
  deliverAll,
  formatReport,
  startApiTarget,
  startContractTarget,
} from '../support/exactly-once';
import type { IngestRequestRecord, IngestServer } from '../support/ingest-server';

const EXIT_STATE = 65;
const EXIT_LOCKED = 75;
/** The maximum time a SIGTERM stop may take, because supervisors kill after 10 s. */
const STOP_LIMIT_MS = 10_000;
/**
 * Slack for the gap check. Node 20 starts a timer from the event loop's cached time (libuv's
 * uv_now), which lags the real time by however long the current loop turn has run. A retry
 * may therefore go out a few milliseconds before its delay has fully passed.
 */
const TIMER_SLACK_MS = 20;

/**
 * A contract target whose anvil can be stopped and started again on the same port from its
 * saved state, with the oracle deployed before the first stop.
 */
class RestartableChain implements DeliveryTarget {
  readonly mode = 'contract';
  readonly env: Record<string, string>;

  private constructor(
    private chain: Chain | undefined,
    readonly port: number,
    private readonly stateFile: string,
    readonly oracle: DeployedOracle,
  ) {
    this.env = {
      ENERGY_ORACLE_RPC_URL: `http://127.0.0.1:${port}`,
      ENERGY_ORACLE_ADDRESS: oracle.address,
      ENERGY_ORACLE_SIGNER_KEY: SIGNER.privateKey,
    };
  }

  static async start(stateFile: string): Promise<RestartableChain> {
    const chain = await startAnvil({ stateFile });
    try {
      const oracle = await deployOracle(chain, { signers: [SIGNER.address] });
      return new RestartableChain(chain, chain.port, stateFile, oracle);
    } catch (error) {
      await chain.stop();
      throw error;
    }
  }

  get running(): boolean {
    return this.chain !== undefined;
  }

  /** Stops anvil with SIGTERM, which makes it write its state file. */
  async stop(): Promise<void> {
    const chain = this.chain;
    this.chain = undefined;
    await chain?.stop();
  }

  async restart(): Promise<void> {
    if (this.chain !== undefined) throw new Error('anvil is already running');
    this.chain = await startAnvil({ port: this.port, stateFile: this.stateFile });
  }

  async deliveries(): Promise<RevisionId[]> {
    if (this.chain === undefined) throw new Error('anvil is stopped; no acceptances to read');
    return chainDeliveries(await readAcceptances(this.chain, this.oracle.address));
  }

  close(): Promise<void> {
    return this.stop();
  }
}

function newPlan(folder: string, revisions: number, seed: number, agents = 8): RevisionPlan {
  return new RevisionPlan({ root: path.join(folder, 'logs'), agents, revisions, seed });
}

/** Waits until everything is accepted, lets late duplicates arrive, then stops the daemon. */
async function deliverAndStop(
  daemon: DaemonProcess,
  target: DeliveryTarget,
  plan: RevisionPlan,
  timeoutMs: number,
): Promise<{ finished: boolean; code: number | null }> {
  const finished = await deliverAll(target, plan, timeoutMs, daemon);
  await sleep(SETTLE_MS);
  const { code } = await daemon.stop();
  return { finished, code };
}

/** Asserts that every written revision was accepted exactly once. */
async function assertExactlyOnce(
  target: DeliveryTarget,
  plan: RevisionPlan,
  context: string,
): Promise<void> {
  const report = countDeliveries(plan.written, await target.deliveries());
  const details = `${context}\n${formatReport(report)}`;
  assert.equal(report.duplicates.length, 0, `no revision was accepted twice\n${details}`);
  assert.equal(report.missing.length, 0, `every revision was accepted\n${details}`);
  assert.equal(report.unexpected.length, 0, `nothing unplanned was accepted\n${details}`);
}

/** Chooses the seed and prints it in the test output. */
function chooseTestSeed(t: TestContext): number {
  const seed = chooseSeed();
  t.diagnostic(`seed ${seed}`);
  return seed;
}

async function killAll(daemons: Array<DaemonProcess | undefined>): Promise<void> {
  for (const daemon of daemons) await daemon?.kill();
}

describe('RPC outages', () => {
  test('anvil restart mid-run, same daemon', { timeout: 90_000 }, async (t) => {
    const seed = chooseTestSeed(t);
    const folder = temporaryFolder('outage-anvil-restart');
    const target = await RestartableChain.start(path.join(folder.path, 'anvil-state.json'));
    let daemon: DaemonProcess | undefined;

    try {
      const plan = newPlan(folder.path, 60, seed);
      plan.writeJobs(plan.unwrittenJobs);
      daemon = new DaemonProcess(daemonEnv(target, folder.path, { TELEMETRY_MAX_RETRIES: '3' }));
      await daemon.waitForAccepted(10);

      await target.stop();
      const failuresBefore = failureLines(daemon.lines).length;
      await sleep(2000);
      const failuresDuring = failureLines(daemon.lines).length - failuresBefore;
      await target.restart();

      const { finished, code } = await deliverAndStop(daemon, target, plan, 60_000);
      const context = `seed ${seed}\n${daemon.tail()}`;
      assert.ok(failuresDuring > 0, `the daemon noticed the outage\n${context}`);
      assert.ok(finished, `the same daemon delivered everything after the restart\n${context}`);
      assert.equal(code, 0, `the daemon stopped cleanly on SIGTERM\n${context}`);
      await assertExactlyOnce(target, plan, context);
    } finally {
      await killAll([daemon]);
      await target.close();
      folder.cleanup();
    }
  });

  test('RPC down at start, up later', { timeout: 60_000 }, async (t) => {
    const seed = chooseTestSeed(t);
    const folder = temporaryFolder('outage-rpc-down');
    const target = await RestartableChain.start(path.join(folder.path, 'anvil-state.json'));
    let daemon: DaemonProcess | undefined;

    try {
      await target.stop();
      const plan = newPlan(folder.path, 20, seed);
      plan.writeJobs(plan.unwrittenJobs);
      daemon = new DaemonProcess(
        daemonEnv(target, folder.path, { TELEMETRY_RETRY_DELAY_MS: '50' }),
      );
      await daemon.waitFor(
        (lines) => connectRetries(lines).length >= 6,
        20_000,
        'six connection retries',
      );
      await target.restart();

      const { finished, code } = await deliverAndStop(daemon, target, plan, 30_000);
      const context = `seed ${seed}\n${daemon.tail()}`;
      const delays = connectRetries(daemon.lines).map((line) => Number(line.retryInMs));
      t.diagnostic(`connection retry delays: ${delays.join(', ')} ms`);
      assert.ok(finished, `the daemon delivered without a restart\n${context}`);
      assert.equal(code, 0, `the daemon stopped cleanly on SIGTERM\n${context}`);
      for (let index = 1; index < delays.length; index += 1) {
        assert.ok(
          delays[index]! > delays[index - 1]!,
          `retry delay ${index + 1} (${delays[index]} ms) is longer than the one before ` +
            `(${delays[index - 1]} ms); all delays: ${delays.join(', ')}`,
        );
      }
      await assertExactlyOnce(target, plan, context);
    } finally {
      await killAll([daemon]);
      await target.close();
      folder.cleanup();
    }
  });
});

describe('API faults at high rates', () => {
  const retryDelayMs = 100;
  const retryAfterSec = 1;
  const seed = chooseSeed();
  const folder = temporaryFolder('outage-api-faults');
  let target: ApiTarget;
  let plan: RevisionPlan;
  let run: { finished: boolean; code: number | null; tail: string };

  before(async () => {
    target = await startApiTarget({
      seed,
      errorRate: 0.15,
      throttleRate: 0.1,
      throttleRetryAfterSec: retryAfterSec,
      hangRate: 0.05,
      resetRate: 0.1,
      acceptThenFailRate: 0.15,
    });
    plan = newPlan(folder.path, 40, seed);
    plan.writeJobs(plan.unwrittenJobs);
    const daemon = new DaemonProcess(
      daemonEnv(target, folder.path, {
        TELEMETRY_REQUEST_TIMEOUT_MS: '500',
        TELEMETRY_RETRY_DELAY_MS: String(retryDelayMs),
      }),
    );
    try {
      const { finished, code } = await deliverAndStop(daemon, target, plan, 90_000);
      run = { finished, code, tail: daemon.tail() };
    } finally {
      await daemon.kill();
    }
  });

  after(async () => {
    await target?.close();
    folder.cleanup();
  });

  test('every revision accepted once', async (t) => {
    t.diagnostic(`seed ${seed}`);
    const context = `seed ${seed}\n${run.tail}`;
    assert.ok(run.finished, `everything was delivered in time\n${context}`);
    assert.equal(run.code, 0, `the daemon stopped cleanly on SIGTERM\n${context}`);
    await assertExactlyOnce(target, plan, context);
  });

  test('every fault kind injected', () => {
    const statuses = new Set(target.server.requests.map((request) => request.status));
    for (const status of [500, 503, 429, 'hang', 'reset'] as const) {
      assert.ok(statuses.has(status), `seed ${seed}: the server answered ${status} at least once`);
    }
    assert.ok(
      replayedAcceptances(target.server) > 0,
      `seed ${seed}: a lost 201 was answered by a replay`,
    );
  });

  test('retries of one key back off', () => {
    const gaps = retryGaps(target.server.requests);
    assert.ok(gaps.length > 0, `seed ${seed}: some key was sent more than once`);
    for (const gap of gaps) {
      const minimumMs = gap.after === 429 ? retryAfterSec * 1000 : retryDelayMs;
      assert.ok(
        gap.gapMs >= minimumMs - TIMER_SLACK_MS,
        `seed ${seed}, key ${gap.key.slice(0, 12)}: sent again ${gap.gapMs} ms after a ` +
          `${gap.after}, expected at least ${minimumMs} ms`,
      );
    }
  });

  test('nothing sent after a 201', () => {
    const keys = keysSentAfterSuccess(target.server.requests);
    assert.deepEqual(keys, [], `seed ${seed}: keys sent again after the server answered 201`);
  });
});

describe('state file problems', () => {
  const corruptions: Array<{ name: string; corrupt: (lines: string[]) => string[] }> = [
    {
      name: 'garbage line mid-file',
      corrupt: (lines) => {
        const middle = Math.floor(lines.length / 2);
        return [...lines.slice(0, middle), '{"t":"done","key":garbage', ...lines.slice(middle)];
      },
    },
    {
      name: 'header version 99',
      corrupt: ([header = '{}', ...rest]) => [
        JSON.stringify({ ...(JSON.parse(header) as object), version: 99 }),
        ...rest,
      ],
    },
  ];

  for (const { name, corrupt } of corruptions) {
    test(`${name} exits with 65`, { timeout: 60_000 }, async (t) => {
      const seed = chooseTestSeed(t);
      const folder = temporaryFolder('outage-state');
      const target = await startApiTarget();
      const env = daemonEnv(target, folder.path);
      const stateFile = env.TELEMETRY_STATE_FILE!;
      let first: DaemonProcess | undefined;
      let daemon: DaemonProcess | undefined;

      try {
        // A first run leaves a real state file with done records for four jobs.
        const plan = newPlan(folder.path, 10, seed);
        plan.writeJobs(4);
        first = new DaemonProcess(env);
        await first.waitForAccepted(4);
        await first.stop();

        const lines = fs.readFileSync(stateFile, 'utf8').split('\n').slice(0, -1);
        const corrupted = `${corrupt(lines).join('\n')}\n`;
        fs.writeFileSync(stateFile, corrupted);
        plan.writeJobs(plan.unwrittenJobs);
        const requestsBefore = target.server.requests.length;

        daemon = new DaemonProcess(env);
        const exit = await exitWithin(daemon, 15_000);
        const context = daemon.tail();
        const fatal = daemon.lines.find((line) => line.level === 'fatal');
        assert.equal(exit?.code, EXIT_STATE, `the daemon exits with 65\n${context}`);
        assert.ok(fatal?.msg.includes(stateFile), `the message names ${stateFile}\n${context}`);
        assert.equal(
          target.server.requests.length,
          requestsBefore,
          'the server received nothing from the refused start',
        );
        assert.equal(
          fs.readFileSync(stateFile, 'utf8'),
          corrupted,
          'the daemon left the state file as it was',
        );
      } finally {
        await killAll([first, daemon]);
        await target.close();
        folder.cleanup();
      }
    });
  }

  test('second daemon exits with 75', { timeout: 60_000 }, async (t) => {
    const seed = chooseTestSeed(t);
    const folder = temporaryFolder('outage-lock');
    const target = await startApiTarget();
    const env = daemonEnv(target, folder.path);
    let first: DaemonProcess | undefined;
    let second: DaemonProcess | undefined;
    let third: DaemonProcess | undefined;

    try {
      const plan = newPlan(folder.path, 20, seed);
      plan.writeJobs(plan.unwrittenJobs);
      first = new DaemonProcess(env);
      await first.waitFor((lines) => lines.some((l) => l.msg === 'connected'), 15_000, 'connected');

      second = new DaemonProcess(env);
      const exit = await exitWithin(second, 15_000);
      const fatal = second.lines.find((line) => line.level === 'fatal');
      assert.equal(exit?.code, EXIT_LOCKED, `the second daemon exits with 75\n${second.tail()}`);
      assert.match(fatal?.msg ?? '', /in use/, `the message says the file is in use`);

      await first.kill();
      third = new DaemonProcess(env);
      const { finished, code } = await deliverAndStop(third, target, plan, 30_000);
      const context = `seed ${seed}\n${third.tail()}`;
      assert.ok(finished, `the daemon started after the kill took over\n${context}`);
      assert.equal(code, 0, `the daemon stopped cleanly on SIGTERM\n${context}`);
      assert.ok(
        third.messages('attestation accepted').length > 0,
        `the daemon started after the kill delivered revisions\n${context}`,
      );
      await assertExactlyOnce(target, plan, context);
    } finally {
      await killAll([first, second, third]);
      await target.close();
      folder.cleanup();
    }
  });
});

describe('SIGTERM mid-run', () => {
  const cases: Array<{ mode: 'contract' | 'api'; start: () => Promise<DeliveryTarget> }> = [
    // Transactions wait up to a second for their block, so many are in flight at once.
    { mode: 'contract', start: () => startContractTarget({ blockTime: 1 }) },
    // Every response is delayed 300 ms, so every lane has a request in flight.
    { mode: 'api', start: () => startApiTarget({ latencyMs: 300 }) },
  ];

  for (const { mode, start } of cases) {
    test(`${mode} mode: stop, then restart`, { timeout: 90_000 }, async (t) => {
      const seed = chooseTestSeed(t);
      const folder = temporaryFolder(`outage-sigterm-${mode}`);
      const target = await start();
      const env = daemonEnv(target, folder.path);
      let daemon: DaemonProcess | undefined;
      let restarted: DaemonProcess | undefined;

      try {
        const plan = newPlan(folder.path, 100, seed, 24);
        plan.writeJobs(plan.unwrittenJobs);
        daemon = new DaemonProcess(env);
        await daemon.waitForAccepted(5);

        const stopAt = Date.now();
        const { code } = await daemon.stop(STOP_LIMIT_MS + 5000);
        const stopMs = Date.now() - stopAt;
        const deliveredAtStop = (await target.deliveries()).length;
        const leftInFlight = daemon.lines.filter((line) =>
          line.msg.startsWith('stopping: the revision in flight'),
        ).length;
        const context = `seed ${seed}\n${daemon.tail()}`;
        t.diagnostic(`stopped in ${stopMs} ms, leaving ${leftInFlight} revisions in flight`);
        assert.equal(code, 0, `SIGTERM ends the daemon with code 0\n${context}`);
        assert.ok(stopMs <= STOP_LIMIT_MS, `the daemon stopped in ${stopMs} ms\n${context}`);
        assert.ok(leftInFlight > 0, `the stop left revisions in flight\n${context}`);
        assert.ok(
          deliveredAtStop < plan.written.length,
          `revisions were left for the restart (${deliveredAtStop} of ${plan.written.length} accepted)`,
        );

        restarted = new DaemonProcess(env);
        const restart = await deliverAndStop(restarted, target, plan, 60_000);
        const restartContext = `seed ${seed}\n${restarted.tail()}`;
        assert.ok(restart.finished, `the restart delivered the rest\n${restartContext}`);
        assert.equal(restart.code, 0, `the restart stopped cleanly\n${restartContext}`);
        await assertExactlyOnce(target, plan, restartContext);
      } finally {
        await killAll([daemon, restarted]);
        await target.close();
        folder.cleanup();
      }
    });
  }
});

/** Resolves with the exit status, or undefined when the daemon is still running after `timeoutMs`. */
async function exitWithin(
  daemon: DaemonProcess,
  timeoutMs: number,
): Promise<{ code: number | null; signal: NodeJS.Signals | null } | undefined> {
  return Promise.race([daemon.exited, sleep(timeoutMs).then(() => undefined)]);
}

function failureLines(lines: readonly LogLine[]): LogLine[] {
  return lines.filter((line) => line.level === 'warn' || line.level === 'error');
}

function connectRetries(lines: readonly LogLine[]): LogLine[] {
  return lines.filter((line) => line.msg.startsWith('target not reachable'));
}

interface RetryGap {
  key: string;
  /** Status of the earlier request. */
  after: IngestRequestRecord['status'];
  gapMs: number;
}

/** Returns the time between consecutive requests with the same Idempotency-Key. */
function retryGaps(requests: readonly IngestRequestRecord[]): RetryGap[] {
  const byKey = new Map<string, IngestRequestRecord[]>();
  for (const request of requests) {
    if (request.idempotencyKey === undefined) continue;
    const list = byKey.get(request.idempotencyKey) ?? [];
    list.push(request);
    byKey.set(request.idempotencyKey, list);
  }

  const gaps: RetryGap[] = [];
  for (const [key, list] of byKey) {
    list.sort((a, b) => a.at - b.at);
    for (let index = 1; index < list.length; index += 1) {
      const previous = list[index - 1]!;
      gaps.push({ key, after: previous.status, gapMs: list[index]!.at - previous.at });
    }
  }
  return gaps;
}

/** Returns the keys sent again after the server responded to them with 201. */
function keysSentAfterSuccess(requests: readonly IngestRequestRecord[]): string[] {
  const succeeded = new Map<string, number>();
  const repeated = new Set<string>();
  for (const request of [...requests].sort((a, b) => a.at - b.at)) {
    const key = request.idempotencyKey;
    if (key === undefined) continue;
    if (succeeded.has(key)) repeated.add(key);
    if (request.status === 201) succeeded.set(key, request.at);
  }
  return [...repeated];
}

/** Counts acceptances whose 201 was lost and that a later request with the same key got as a replay. */
function replayedAcceptances(server: IngestServer): number {
  return server.accepted.filter((record) =>
    server.requests.some(
      (request) =>
        request.idempotencyKey === record.idempotencyKey &&
        request.status === 201 &&
        request.at > record.receivedAt,
    ),
  ).length;
}
