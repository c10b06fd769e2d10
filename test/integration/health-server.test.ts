import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { RetryableError } from '../../apps/operator/errors';
import type {
  HealthServer,
  HealthServerOptions,
  ReadyReport,
} from '../../apps/operator/health-server';
import {
  createReadinessCheck,
  healthStatus,
  startHealthServer,
} from '../../apps/operator/health-server';
import { createLogger } from '../../apps/operator/logger';
import { TelemetryMetrics } from '../../apps/operator/metrics';
import { TelemetryStats } from '../../apps/operator/stats';
import type { TargetInfo } from '../../apps/operator/submitter';

const POLL_MS = 1000;
const STALL_AFTER_MS = 3 * POLL_MS + 30_000;
const ONE_ETHER = 10n ** 18n;
const SIGNER = '0x70997970C51812dc3A010C7d01b50e0d17dc79C8';

/** Log lines written through pino, parsed, for checks on what the operator would see. */
class CapturedLog {
  readonly lines: Array<Record<string, unknown>> = [];
  readonly logger: Logger = createLogger('debug', {
    write: (line: string) => {
      this.lines.push(JSON.parse(line) as Record<string, unknown>);
    },
  });

  withMessage(pattern: RegExp): Array<Record<string, unknown>> {
    return this.lines.filter((line) => pattern.test(String(line.msg)));
  }
}

/** Fake submitter whose reachability and signer status the test sets. */
class FakeTarget {
  reachable = true;
  authorised: boolean | undefined = true;

  connect(): Promise<TargetInfo> {
    if (!this.reachable) {
      return Promise.reject(new RetryableError('the RPC endpoint is unreachable (ECONNREFUSED)'));
    }
    return Promise.resolve({ chainId: 31337n, target: 'fake' });
  }

  signerAuthorised(): Promise<boolean | undefined> {
    return Promise.resolve(this.authorised);
  }
}

/** Returns the value of one sample in Prometheus text, or undefined when it is absent. */
function sample(text: string, name: string, labels = ''): number | undefined {
  const prefix = labels === '' ? `${name} ` : `${name}{${labels}} `;
  const line = text.split('\n').find((candidate) => candidate.startsWith(prefix));
  return line === undefined ? undefined : Number(line.slice(prefix.length));
}

async function scrape(server: HealthServer): Promise<string> {
  const response = await fetch(`${server.url}/metrics`);
  assert.equal(response.status, 200);
  return response.text();
}

describe('health server in contract mode', () => {
  const startedAtMs = Date.parse('2025-01-01T00:00:00.000Z');
  let nowMs = startedAtMs;
  const stats = new TelemetryStats();
  const log = new CapturedLog();
  const target = new FakeTarget();
  const metrics = new TelemetryMetrics({
    stats,
    logger: log.logger,
    contractMode: true,
    minBalanceWei: ONE_ETHER,
    signer: SIGNER,
  });
  let failReadiness = false;
  let server: HealthServer;

  before(async () => {
    const check = createReadinessCheck({ submitter: target, timeoutMs: 1000, cacheMs: 0 });
    server = await startHealthServer({
      host: '127.0.0.1',
      port: 0,
      logger: log.logger,
      metrics,
      health: () => healthStatus(stats, nowMs, POLL_MS, startedAtMs),
      ready: (): Promise<ReadyReport> => {
        if (failReadiness) return Promise.reject(new Error('submitter closed'));
        return check();
      },
    });
  });

  after(async () => {
    await server.close();
  });

  test('listens on 127.0.0.1 and logs the URL', () => {
    assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    const started = log.withMessage(/listener started/);
    assert.equal(started.length, 1);
    assert.equal(started[0]?.url, server.url);
  });

  test('healthz flips when cycle ages', async () => {
    nowMs = startedAtMs + 1000;
    let response = await fetch(`${server.url}/healthz`);
    assert.equal(response.status, 200);
    let body = (await response.json()) as Record<string, unknown>;
    assert.equal(body.status, 'starting');
    assert.equal(body.lastCycleAt, null);
    assert.equal(response.headers.get('content-type'), 'application/json; charset=utf-8');

    stats.lastCycleAtMs = startedAtMs + 2000;
    nowMs = stats.lastCycleAtMs + STALL_AFTER_MS;
    response = await fetch(`${server.url}/healthz`);
    assert.equal(response.status, 200);
    body = (await response.json()) as Record<string, unknown>;
    assert.equal(body.status, 'ok');
    assert.equal(body.lastCycleAt, '2025-01-01T00:00:02.000Z');

    nowMs += 1;
    response = await fetch(`${server.url}/healthz`);
    assert.equal(response.status, 503);
    body = (await response.json()) as Record<string, unknown>;
    assert.equal(body.status, 'stalled');
    assert.equal(body.idleMs, STALL_AFTER_MS + 1);
    assert.equal(body.stallAfterMs, STALL_AFTER_MS);

    stats.lastCycleAtMs = nowMs;
    response = await fetch(`${server.url}/healthz`);
    assert.equal(response.status, 200);
  });

  test('readyz reports the reason', async () => {
    let response = await fetch(`${server.url}/readyz`);
    assert.equal(response.status, 200);
    assert.deepEqual(await response.json(), { status: 'ready', signerAuthorised: true });

    target.reachable = false;
    response = await fetch(`${server.url}/readyz`);
    assert.equal(response.status, 503);
    let body = (await response.json()) as Record<string, unknown>;
    assert.equal(body.status, 'not ready');
    assert.equal(body.reason, 'target-unreachable');
    assert.match(String(body.message), /ECONNREFUSED/);

    target.reachable = true;
    target.authorised = false;
    response = await fetch(`${server.url}/readyz`);
    assert.equal(response.status, 503);
    body = (await response.json()) as Record<string, unknown>;
    assert.equal(body.reason, 'signer-not-authorised');

    target.authorised = true;
    failReadiness = true;
    response = await fetch(`${server.url}/readyz`);
    failReadiness = false;
    assert.equal(response.status, 503);
    body = (await response.json()) as Record<string, unknown>;
    assert.equal(body.reason, 'check-failed');
    assert.match(String(body.message), /submitter closed/);
    assert.equal(log.withMessage(/readiness check failed/).length, 1);
  });

  test('metrics content type and names', async () => {
    const response = await fetch(`${server.url}/metrics`);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
    const text = await response.text();

    const names = [
      'operator_telemetry_attestations_accepted_total',
      'operator_telemetry_attestations_rejected_total',
      'operator_telemetry_attestations_failed_total',
      'operator_telemetry_retries_total',
      'operator_telemetry_files_skipped_total',
      'operator_telemetry_pending_revisions',
      'operator_telemetry_last_successful_cycle_timestamp_seconds',
      'operator_telemetry_signer_balance_wei',
      'operator_telemetry_gas_spent_wei_total',
      'operator_telemetry_cycle_duration_seconds',
      'process_cpu_user_seconds_total',
      'nodejs_heap_size_used_bytes',
    ];
    for (const name of names) {
      assert.ok(text.includes(`# TYPE ${name} `), `${name} is missing from /metrics`);
    }
  });

  test('metrics follow the stats', async () => {
    stats.accepted += 3;
    stats.failed += 1;
    stats.retries += 4;
    stats.recordRejection('nonce-used');
    stats.recordRejection('nonce-used');
    stats.recordRejection('deadline-passed');
    stats.recordSkip('too-large');
    stats.recordSkip('invalid-json');
    stats.recordSkip('invalid-json');
    stats.recordCycle(1500, 7);
    metrics.observeCycle(1500);
    metrics.observeCycle(20);

    let text = await scrape(server);
    assert.equal(sample(text, 'operator_telemetry_attestations_accepted_total'), 3);
    assert.equal(sample(text, 'operator_telemetry_attestations_failed_total'), 1);
    assert.equal(sample(text, 'operator_telemetry_retries_total'), 4);
    const rejected = 'operator_telemetry_attestations_rejected_total';
    assert.equal(sample(text, rejected, 'reason="nonce-used"'), 2);
    assert.equal(sample(text, rejected, 'reason="deadline-passed"'), 1);
    const skipped = 'operator_telemetry_files_skipped_total';
    assert.equal(sample(text, skipped, 'reason="too-large"'), 1);
    assert.equal(sample(text, skipped, 'reason="invalid-json"'), 2);
    assert.equal(sample(text, 'operator_telemetry_pending_revisions'), 7);
    const lastCycle = sample(text, 'operator_telemetry_last_successful_cycle_timestamp_seconds');
    assert.equal(lastCycle, (stats.lastCycleAtMs ?? 0) / 1000);
    const duration = 'operator_telemetry_cycle_duration_seconds';
    assert.equal(sample(text, `${duration}_count`), 2);
    assert.equal(sample(text, `${duration}_sum`), 1.52);
    assert.equal(sample(text, `${duration}_bucket`, 'le="0.05"'), 1);
    assert.equal(sample(text, `${duration}_bucket`, 'le="2.5"'), 2);

    // A second scrape reads the stats again rather than adding to the first reading.
    stats.accepted += 2;
    stats.recordSkip('too-large');
    text = await scrape(server);
    assert.equal(sample(text, 'operator_telemetry_attestations_accepted_total'), 5);
    assert.equal(sample(text, skipped, 'reason="too-large"'), 2);
    assert.equal(sample(text, rejected, 'reason="nonce-used"'), 2);
    assert.equal(sample(text, `${duration}_count`), 2);
  });

  test('gas counts each transaction once', async () => {
    const gas = 'operator_telemetry_gas_spent_wei_total';
    assert.equal(sample(await scrape(server), gas), 0);

    metrics.recordGasSpent(21_000n * 1_000_000_000n, '0xAA');
    metrics.recordGasSpent(21_000n * 1_000_000_000n, '0xaa');
    metrics.recordGasSpent(50_000n * 2_000_000_000n, '0xbb');
    assert.equal(sample(await scrape(server), gas), 21_000e9 + 100_000e9);
  });

  test('balance warning once per crossing', async () => {
    const balance = 'operator_telemetry_signer_balance_wei';
    const warnings = (): Array<Record<string, unknown>> => log.withMessage(/balance is below/);
    const recoveries = (): Array<Record<string, unknown>> => log.withMessage(/back above/);

    let text = await scrape(server);
    assert.ok(text.includes(`# TYPE ${balance} gauge`));
    assert.equal(sample(text, balance), undefined, 'no balance sample before the first read');

    metrics.setSignerBalance(2n * ONE_ETHER);
    assert.equal(sample(await scrape(server), balance), 2e18);
    assert.equal(warnings().length, 0);

    metrics.setSignerBalance(ONE_ETHER / 2n);
    metrics.setSignerBalance(ONE_ETHER / 4n);
    await scrape(server);
    text = await scrape(server);
    assert.equal(sample(text, balance), 0.25e18);
    assert.equal(warnings().length, 1);
    const warning = warnings()[0];
    assert.equal(warning?.level, 'warn');
    assert.equal(warning?.signer, SIGNER);
    assert.equal(warning?.balanceEth, '0.5');
    assert.equal(warning?.minBalanceEth, '1.0');

    metrics.setSignerBalance(ONE_ETHER);
    assert.equal(recoveries().length, 1);
    assert.equal(warnings().length, 1);

    metrics.setSignerBalance(ONE_ETHER - 1n);
    assert.equal(warnings().length, 2);
    assert.equal(warnings()[1]?.balanceEth, '0.999999999999999999');
  });

  test('unknown path is 404', async () => {
    const response = await fetch(`${server.url}/status`);
    assert.equal(response.status, 404);
    await response.body?.cancel();
  });

  test('other methods are 405', async () => {
    const response = await fetch(`${server.url}/metrics`, { method: 'POST' });
    assert.equal(response.status, 405);
    assert.equal(response.headers.get('allow'), 'GET, HEAD');
    await response.body?.cancel();
  });

  test('query string is ignored', async () => {
    const response = await fetch(`${server.url}/healthz?verbose=1`);
    assert.equal(response.status, 200);
    await response.body?.cancel();
  });
});

describe('health server in API mode', () => {
  const stats = new TelemetryStats();
  const log = new CapturedLog();
  let server: HealthServer;

  before(async () => {
    const metrics = new TelemetryMetrics({
      stats,
      logger: log.logger,
      contractMode: false,
      minBalanceWei: undefined,
      signer: undefined,
      processMetrics: false,
    });
    server = await startHealthServer({
      host: '127.0.0.1',
      port: 0,
      logger: log.logger,
      metrics,
      health: () => healthStatus(stats, Date.now(), POLL_MS, Date.now()),
      ready: () => Promise.resolve({ status: 'ready', signerAuthorised: null }),
    });
  });

  after(async () => {
    await server.close();
  });

  test('no signer account metrics', async () => {
    const text = await scrape(server);
    assert.ok(!text.includes('operator_telemetry_signer_balance_wei'));
    assert.ok(!text.includes('operator_telemetry_gas_spent_wei_total'));
    assert.ok(!text.includes('process_cpu_user_seconds_total'));
    assert.ok(text.includes('# TYPE operator_telemetry_attestations_accepted_total counter'));
  });

  test('last cycle absent before the first', async () => {
    const name = 'operator_telemetry_last_successful_cycle_timestamp_seconds';
    assert.equal(sample(await scrape(server), name), undefined);
  });
});

/** Options for a listener in API mode, without process metrics, on a free port. */
function apiModeOptions(
  ready: () => Promise<ReadyReport> = () =>
    Promise.resolve({ status: 'ready', signerAuthorised: null }),
): HealthServerOptions {
  const log = new CapturedLog();
  const stats = new TelemetryStats();
  return {
    host: '127.0.0.1',
    port: 0,
    logger: log.logger,
    metrics: new TelemetryMetrics({
      stats,
      logger: log.logger,
      contractMode: false,
      minBalanceWei: undefined,
      signer: undefined,
      processMetrics: false,
    }),
    health: () => healthStatus(stats, Date.now(), POLL_MS, Date.now()),
    ready,
  };
}

describe('startHealthServer', () => {
  test('port in use is an error', async () => {
    const options = apiModeOptions();
    const first = await startHealthServer(options);
    const port = Number(new URL(first.url).port);
    try {
      await assert.rejects(startHealthServer({ ...options, port }), /EADDRINUSE/);
    } finally {
      await first.close();
    }
  });

  test('close stops the listener', async () => {
    const server = await startHealthServer(apiModeOptions());
    const response = await fetch(`${server.url}/healthz`);
    await response.text();

    await server.close();
    await server.close();
    await assert.rejects(fetch(`${server.url}/healthz`));
  });

  test('close ends a request in flight', async () => {
    let release = (): void => undefined;
    const hanging = new Promise<ReadyReport>((resolve) => {
      release = () => resolve({ status: 'ready', signerAuthorised: null });
    });
    const server = await startHealthServer(apiModeOptions(() => hanging));
    const probe = fetch(`${server.url}/readyz`);
    // Give the request time to reach the handler before closing.
    await sleep(50);

    const outcome = await Promise.race([
      server.close().then(() => 'closed'),
      sleep(1000, 'still open after 1000 ms'),
    ]);
    release();
    assert.equal(outcome, 'closed');
    await assert.rejects(probe);
  });
});
