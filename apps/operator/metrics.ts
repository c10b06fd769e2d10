import { formatEther } from 'ethers';
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { TelemetryStats } from './stats';

/**
 * Prometheus metrics for the daemon, on a registry of their own so that nothing else in the
 * process can add to or clash with them.
 *
 * TelemetryStats stays the source of truth: the counters and gauges copy its plain numbers
 * in prom-client `collect()` callbacks at scrape time, so the service never imports
 * prom-client. Three values cannot be read that way and are pushed through narrow
 * interfaces instead. Cycle durations need every observation for the histogram, but the
 * stats keep only the last 1000. Gas spent and the signer balance are seen only by the
 * contract submitter.
 */

/** Receiver of cycle durations, which the service feeds after each cycle. */
export interface CycleObserver {
  observeCycle(durationMs: number): void;
}

/** Receiver of the fees and balance of the signer account, fed by the contract submitter. */
export interface SignerAccountMeter {
  /**
   * Adds the fee a mined transaction cost (`receipt.fee`: gas used × effective gas price).
   * Each transaction hash counts once, however many times its receipt is read.
   */
  recordGasSpent(feeWei: bigint, txHash: string): void;
  setSignerBalance(balanceWei: bigint): void;
}

export interface TelemetryMetricsOptions {
  stats: TelemetryStats;
  logger: Logger;
  /**
   * Registers the signer balance and gas metrics. Only contract mode sends transactions,
   * so in API mode they would always read zero.
   */
  contractMode: boolean;
  /** A balance below this logs a warning once per crossing (TELEMETRY_MIN_BALANCE_ETH). */
  minBalanceWei: bigint | undefined;
  /** The signer address, for the balance log lines. */
  signer: string | undefined;
  /** Adds prom-client's default process and Node.js metrics. Default true. */
  processMetrics?: boolean;
}

/**
 * Cycle duration buckets in seconds. An idle cycle takes milliseconds, while a contract-mode
 * cycle that waits for receipts can take minutes.
 */
const CYCLE_BUCKETS_SEC = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];

/**
 * Maximum number of transaction hashes kept to count each fee once. When the set is full,
 * the oldest hash is dropped.
 */
const MAX_COUNTED_TRANSACTIONS = 10_000;

const PREFIX = 'operator_telemetry_';

export class TelemetryMetrics implements CycleObserver, SignerAccountMeter {
  private readonly registry = new Registry();
  private readonly stats: TelemetryStats;
  private readonly logger: Logger;
  private readonly minBalanceWei: bigint | undefined;
  private readonly signer: string | undefined;
  private readonly cycleDuration: Histogram;
  private readonly countedTransactions = new Set<string>();
  private gasSpentWei = 0n;
  private balanceWei: bigint | undefined;
  private balanceBelowMinimum = false;

  constructor(options: TelemetryMetricsOptions) {
    this.stats = options.stats;
    this.logger = options.logger;
    this.minBalanceWei = options.minBalanceWei;
    this.signer = options.signer;

    this.registerStatsCounters();
    this.registerStatsGauges();
    this.cycleDuration = new Histogram({
      name: `${PREFIX}cycle_duration_seconds`,
      help: 'Duration of each polling cycle: scan, sign and deliver.',
      buckets: CYCLE_BUCKETS_SEC,
      registers: [this.registry],
    });
    if (options.contractMode) this.registerSignerAccountMetrics();
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });
  }

  /** The Content-Type header value for `render()`'s output. */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** Reads the stats and returns every metric in the Prometheus text exposition format. */
  async render(): Promise<string> {
    return this.registry.metrics();
  }

  observeCycle(durationMs: number): void {
    this.cycleDuration.observe(durationMs / 1000);
  }

  recordGasSpent(feeWei: bigint, txHash: string): void {
    const hash = txHash.toLowerCase();
    if (this.countedTransactions.has(hash)) return;

    this.countedTransactions.add(hash);
    if (this.countedTransactions.size > MAX_COUNTED_TRANSACTIONS) {
      const oldest = this.countedTransactions.values().next().value;
      if (oldest !== undefined) this.countedTransactions.delete(oldest);
    }
    this.gasSpentWei += feeWei;
  }

  /**
   * Stores the balance for the gauge, and logs when it crosses TELEMETRY_MIN_BALANCE_ETH:
   * one warning when it falls below and one info line when it is back, however often it
   * is set or scraped in between.
   */
  setSignerBalance(balanceWei: bigint): void {
    this.balanceWei = balanceWei;
    if (this.minBalanceWei === undefined) return;

    const below = balanceWei < this.minBalanceWei;
    const fields = {
      signer: this.signer,
      balanceEth: formatEther(balanceWei),
      minBalanceEth: formatEther(this.minBalanceWei),
    };
    if (below && !this.balanceBelowMinimum) {
      this.logger.warn(
        fields,
        'signer balance is below TELEMETRY_MIN_BALANCE_ETH; fund the signer account before transactions fail for lack of gas',
      );
    } else if (!below && this.balanceBelowMinimum) {
      this.logger.info(fields, 'signer balance is back above TELEMETRY_MIN_BALANCE_ETH');
    }
    this.balanceBelowMinimum = below;
  }

  private registerStatsCounters(): void {
    const stats = this.stats;
    const registers = [this.registry];

    // A counter cannot be set, so each scrape resets it and adds the current total. The
    // totals in the stats only grow, which keeps the exposed series monotonic.
    new Counter({
      name: `${PREFIX}attestations_accepted_total`,
      help: 'Attestations the target accepted, including those found accepted when reconciling at start.',
      registers,
      collect() {
        this.reset();
        this.inc(stats.accepted);
      },
    });
    new Counter({
      name: `${PREFIX}attestations_rejected_total`,
      help: 'Revisions that ended a cycle rejected by the target, by rejection reason.',
      labelNames: ['reason'],
      registers,
      collect() {
        this.reset();
        for (const [reason, count] of stats.rejected) this.inc({ reason }, count);
      },
    });
    new Counter({
      name: `${PREFIX}attestations_failed_total`,
      help: 'Revisions that ended a cycle undelivered for any reason other than a rejection.',
      registers,
      collect() {
        this.reset();
        this.inc(stats.failed);
      },
    });
    new Counter({
      name: `${PREFIX}retries_total`,
      help: 'Delivery attempts retried within a cycle.',
      registers,
      collect() {
        this.reset();
        this.inc(stats.retries);
      },
    });
    new Counter({
      name: `${PREFIX}files_skipped_total`,
      help: 'Energy log files skipped, by reason.',
      labelNames: ['reason'],
      registers,
      collect() {
        this.reset();
        for (const [reason, count] of stats.skipped) this.inc({ reason }, count);
      },
    });
  }

  private registerStatsGauges(): void {
    const stats = this.stats;
    const registers = [this.registry];

    new Gauge({
      name: `${PREFIX}pending_revisions`,
      help: 'Revisions due or signed but not yet accepted, at the end of the last cycle.',
      registers,
      collect() {
        this.set(stats.pendingRevisions);
      },
    });
    new Gauge({
      name: `${PREFIX}last_successful_cycle_timestamp_seconds`,
      help: 'Unix time at which the last polling cycle finished, even if some deliveries in it failed. Absent before the first cycle.',
      registers,
      collect() {
        if (stats.lastCycleAtMs === undefined) this.remove();
        else this.set(stats.lastCycleAtMs / 1000);
      },
    });
  }

  /**
   * Both values are exact bigints here and become float64 only at scrape time. A float64
   * has a 53-bit significand, so the exposed numbers are exact up to 2^53 wei (about 0.009
   * ether) and rounded to about 16 significant digits above, which is ample for alerts.
   */
  private registerSignerAccountMetrics(): void {
    const registers = [this.registry];
    const readBalance = (): bigint | undefined => this.balanceWei;
    const readGasSpent = (): bigint => this.gasSpentWei;

    new Gauge({
      name: `${PREFIX}signer_balance_wei`,
      help: 'Balance of the signer account in wei, as last read from the chain. Absent until the first read. A float64, so exact only below 2^53 wei.',
      registers,
      collect() {
        const balance = readBalance();
        if (balance === undefined) this.remove();
        else this.set(Number(balance));
      },
    });
    new Counter({
      name: `${PREFIX}gas_spent_wei_total`,
      help: "Fees of the signer's mined transactions whose receipts this process read (gas used × effective gas price), in wei. Rollup L1 data fees are not included. A float64, so exact only below 2^53 wei.",
      registers,
      collect() {
        this.reset();
        this.inc(Number(readGasSpent()));
      },
    });
  }
}
