import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { Config } from './config';
import { describeError } from './errors';
import type { TelemetryMetrics } from './metrics';
import type { TelemetryStats } from './stats';
import type { Submitter } from './submitter';

/**
 * The health and metrics listener: `GET /healthz` for liveness, `GET /readyz` for
 * readiness and `GET /metrics` for Prometheus. The health and readiness decisions are
 * separate functions so that they can be tested without a socket.
 */

/** /healthz returns 200 for `ok` and `starting`, and 503 for `stalled`. */
export type HealthState = 'ok' | 'starting' | 'stalled';

export interface HealthReport {
  status: HealthState;
  /** ISO 8601 time at which the last polling cycle finished, or null before the first one. */
  lastCycleAt: string | null;
  startedAt: string;
  /** Time since the last cycle finished, or since start before the first cycle. */
  idleMs: number;
  /** The polling loop counts as stalled once `idleMs` exceeds this. */
  stallAfterMs: number;
}

export type NotReadyReason =
  'target-unreachable' | 'signer-not-authorised' | 'check-timed-out' | 'check-failed';

export type ReadyReport =
  | { status: 'ready'; signerAuthorised: boolean | null }
  | { status: 'not ready'; reason: NotReadyReason; message: string };

/** Poll intervals and slack that make up the default stall threshold. */
const STALL_POLL_INTERVALS = 3;
const STALL_SLACK_MS = 30_000;

/** Returns the default stall threshold: three poll intervals plus 30 s. */
export function defaultStallAfterMs(pollIntervalMs: number): number {
  return STALL_POLL_INTERVALS * pollIntervalMs + STALL_SLACK_MS;
}

/**
 * Estimates a stall threshold that a slow but working cycle stays under: the default plus
 * every attempt at one revision timing out, with the waits between attempts. In contract
 * mode an attempt can wait TELEMETRY_TX_TIMEOUT_MS for a receipt, so the default alone
 * would report a cycle that waits for a slow block as stalled.
 *
 * NOTE: a cycle in which several revisions of one agent each wait for slow receipts can
 * still take longer than this estimate.
 */
export function stallThresholdMs(
  config: Pick<
    Config,
    'mode' | 'pollIntervalMs' | 'maxRetries' | 'retryDelayMs' | 'requestTimeoutMs' | 'txTimeoutMs'
  >,
): number {
  const attemptMs =
    config.mode === 'contract'
      ? config.txTimeoutMs + config.requestTimeoutMs
      : config.requestTimeoutMs;
  const waitsBetweenAttemptsMs = config.retryDelayMs * (2 ** (config.maxRetries - 1) - 1);
  return (
    defaultStallAfterMs(config.pollIntervalMs) +
    config.maxRetries * attemptMs +
    waitsBetweenAttemptsMs
  );
}

/**
 * Decides whether the polling loop makes progress. It does while the last finished cycle is
 * at most `stallAfterMs` old. Before the first cycle, the time since start gets the same
 * allowance and the status is `starting`.
 *
 * NOTE: the daemon runs no cycle while it retries an unreachable target at start, so a
 * long outage turns /healthz into 503 and a liveness probe would restart the daemon.
 * /readyz is the probe that reports the outage itself.
 */
export function healthStatus(
  stats: Pick<TelemetryStats, 'lastCycleAtMs'>,
  nowMs: number,
  pollIntervalMs: number,
  startedAtMs: number,
  stallAfterMs: number = defaultStallAfterMs(pollIntervalMs),
): HealthReport {
  const lastCycleAtMs = stats.lastCycleAtMs;
  const since = lastCycleAtMs ?? startedAtMs;
  // A wall clock stepped backwards makes the age negative, which is not a stall.
  const idleMs = Math.max(0, nowMs - since);

  let status: HealthState;
  if (idleMs > stallAfterMs) status = 'stalled';
  else status = lastCycleAtMs === undefined ? 'starting' : 'ok';

  return {
    status,
    lastCycleAt: lastCycleAtMs === undefined ? null : new Date(lastCycleAtMs).toISOString(),
    startedAt: new Date(startedAtMs).toISOString(),
    idleMs,
    stallAfterMs,
  };
}

export interface ReadinessCheckOptions {
  submitter: Pick<Submitter, 'connect' | 'signerAuthorised'>;
  /** A check that takes longer reports `check-timed-out`. */
  timeoutMs: number;
  /** How long a result is reused, so that frequent probes spare the target. Default 5000 ms. */
  cacheMs?: number;
  /** Clock in milliseconds, for tests. Default `Date.now`. */
  now?: () => number;
}

const TIMED_OUT = Symbol('timed out');

/**
 * Builds the `ready` callback: the target is reachable (`connect()` succeeds) and the signer
 * is not known to be unauthorised. Probes that arrive while a check runs share its result.
 *
 * NOTE: in API mode `connect()` sends no request and the API cannot report the signer, so
 * /readyz is 200 there as long as the daemon runs.
 */
export function createReadinessCheck(options: ReadinessCheckOptions): () => Promise<ReadyReport> {
  const cacheMs = options.cacheMs ?? 5000;
  const now = options.now ?? Date.now;
  let cached: { report: ReadyReport; checkedAtMs: number } | undefined;
  let running: Promise<ReadyReport> | undefined;

  const check = async (): Promise<ReadyReport> => {
    const report = await withTimeout(checkReadiness(options.submitter), options.timeoutMs);
    if (report !== TIMED_OUT) return report;
    return {
      status: 'not ready',
      reason: 'check-timed-out',
      message: `the readiness check timed out after ${options.timeoutMs} ms`,
    };
  };

  return async () => {
    if (cached !== undefined && now() - cached.checkedAtMs < cacheMs) return cached.report;
    if (running === undefined) {
      running = check().finally(() => {
        running = undefined;
      });
    }
    const report = await running;
    cached = { report, checkedAtMs: now() };
    return report;
  };
}

async function checkReadiness(
  submitter: Pick<Submitter, 'connect' | 'signerAuthorised'>,
): Promise<ReadyReport> {
  try {
    await submitter.connect();
  } catch (error) {
    return {
      status: 'not ready',
      reason: 'target-unreachable',
      message: `the target is not reachable: ${describeError(error)}`,
    };
  }

  let authorised: boolean | undefined;
  try {
    authorised = await submitter.signerAuthorised();
  } catch (error) {
    return {
      status: 'not ready',
      reason: 'target-unreachable',
      message: `reading whether the signer is authorised failed: ${describeError(error)}`,
    };
  }

  if (authorised === false) {
    return {
      status: 'not ready',
      reason: 'signer-not-authorised',
      message:
        'the signer is not authorised on the oracle; attestations are rejected until governance calls setSigner for it',
    };
  }
  return { status: 'ready', signerAuthorised: authorised ?? null };
}

async function withTimeout<T>(work: Promise<T>, timeoutMs: number): Promise<T | typeof TIMED_OUT> {
  const timer = new AbortController();
  try {
    return await Promise.race([work, sleep(timeoutMs, TIMED_OUT, { signal: timer.signal })]);
  } finally {
    timer.abort();
  }
}

export interface HealthServerOptions {
  host: string;
  port: number;
  logger: Logger;
  metrics: TelemetryMetrics;
  health: () => HealthReport;
  ready: () => Promise<ReadyReport>;
}

export interface HealthServer {
  /** Base URL of the listener, such as `http://127.0.0.1:9464`. */
  url: string;
  /** Stops listening and ends open connections, keep-alive ones included. */
  close(): Promise<void>;
}

/** A probe or scrape that takes longer than this is cut off. */
const REQUEST_TIMEOUT_MS = 10_000;
const HEADERS_TIMEOUT_MS = 5_000;

/**
 * Starts the listener on `host:port` (port 0 picks a free port). Rejects when the address
 * cannot be bound, for example when the port is already in use.
 */
export async function startHealthServer(options: HealthServerOptions): Promise<HealthServer> {
  const { logger } = options;
  const server = http.createServer((request, response) => {
    void handle(request, response, options);
  });
  server.requestTimeout = REQUEST_TIMEOUT_MS;
  server.headersTimeout = HEADERS_TIMEOUT_MS;

  try {
    await listen(server, options.host, options.port);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? describeError(error);
    throw new Error(
      `the health and metrics listener failed to bind ${options.host}:${options.port} (${code}). ` +
        'Set TELEMETRY_METRICS_PORT to a free port or TELEMETRY_METRICS_HOST to a local address.',
      { cause: error },
    );
  }
  server.on('error', (error) => {
    logger.error({ err: describeError(error) }, 'health and metrics listener failed');
  });

  const url = listenerUrl(server.address() as AddressInfo);
  logger.info(
    { url, routes: ['/healthz', '/readyz', '/metrics'] },
    'health and metrics listener started',
  );

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= new Promise<void>((resolve, reject) => {
      server.close((error) => (error === undefined ? resolve() : reject(error)));
      // close() ends idle keep-alive connections itself (Node 19 and later), but a request in
      // flight, such as a slow readiness check, would hold it open without this.
      server.closeAllConnections();
    });
    return closing;
  };
  return { url, close };
}

function listen(server: http.Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

function listenerUrl(address: AddressInfo): string {
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return `http://${host}:${address.port}`;
}

async function handle(
  request: http.IncomingMessage,
  response: http.ServerResponse,
  options: HealthServerOptions,
): Promise<void> {
  // The base only lets URL parse the request target; no request is sent to it.
  const path = new URL(request.url ?? '/', 'http://localhost').pathname;
  try {
    await route(path, request.method ?? 'GET', response, options);
  } catch (error) {
    options.logger.error(
      { path, err: describeError(error) },
      'health and metrics listener could not answer a request',
    );
    if (!response.headersSent) sendText(response, 500, 'internal error\n');
    else response.destroy();
  }
}

async function route(
  path: string,
  method: string,
  response: http.ServerResponse,
  options: HealthServerOptions,
): Promise<void> {
  if (path !== '/healthz' && path !== '/readyz' && path !== '/metrics') {
    sendJson(response, 404, { status: 'not found', routes: ['/healthz', '/readyz', '/metrics'] });
    return;
  }
  if (method !== 'GET' && method !== 'HEAD') {
    response.setHeader('allow', 'GET, HEAD');
    sendJson(response, 405, { status: 'method not allowed', allowed: ['GET', 'HEAD'] });
    return;
  }

  if (path === '/healthz') {
    const report = options.health();
    sendJson(response, report.status === 'stalled' ? 503 : 200, report);
    return;
  }

  if (path === '/readyz') {
    const report = await readyReport(options);
    sendJson(response, report.status === 'ready' ? 200 : 503, report);
    return;
  }

  const text = await options.metrics.render();
  response.writeHead(200, {
    'content-type': options.metrics.contentType,
    'cache-control': 'no-store',
  });
  response.end(text);
}

/** Runs the `ready` callback. An error it throws counts as a failed check, not a failed request. */
async function readyReport(options: HealthServerOptions): Promise<ReadyReport> {
  try {
    return await options.ready();
  } catch (error) {
    options.logger.warn({ err: describeError(error) }, 'readiness check failed');
    return {
      status: 'not ready',
      reason: 'check-failed',
      message: `the readiness check failed: ${describeError(error)}`,
    };
  }
}

function sendJson(response: http.ServerResponse, statusCode: number, body: unknown): void {
  response.writeHead(statusCode, {
    'content-type': 'application/json; charset=utf-8',
    'cache-control': 'no-store',
  });
  response.end(`${JSON.stringify(body)}\n`);
}

function sendText(response: http.ServerResponse, statusCode: number, text: string): void {
  response.writeHead(statusCode, { 'content-type': 'text/plain; charset=utf-8' });
  response.end(text);
}
