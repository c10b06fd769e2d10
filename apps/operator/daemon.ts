import type { Wallet } from 'ethers';
import type { Logger } from 'pino';
import type { Config } from './config';
import type { SignerAccountMeter } from './metrics';
import { TelemetryMetrics } from './metrics';
import { TelemetryStats } from './stats';
import type { NonceProvider } from './nonces';
import { ContractNonceProvider, StateNonceProvider } from './nonces';
import { LogScanner } from './scanner';
import { StateStore } from './state';
import type { Submitter } from './submitter';
import { ApiSubmitter } from './submitter-api';
import { ContractSubmitter } from './submitter-contract';
import { TelemetryService } from './service';

/** Builds the submitter for the configured mode, with the nonce provider that goes with it. */
export function createSubmitter(
  config: Config,
  wallet: Wallet,
  state: StateStore | undefined,
  meter?: SignerAccountMeter,
): { submitter: Submitter; nonces: (state: StateStore) => NonceProvider } {
  if (config.mode === 'contract') {
    const submitter = new ContractSubmitter(
      {
        rpcUrl: config.rpcUrl ?? '',
        oracleAddress: config.oracleAddress,
        expectedChainId: config.chainId,
        confirmations: config.confirmations,
        requestTimeoutMs: config.requestTimeoutMs,
        txTimeoutMs: config.txTimeoutMs,
        maxFeePerGasWei: config.maxFeePerGasWei,
        priorityFeePerGasWei: config.priorityFeePerGasWei,
      },
      wallet.connect(null),
      meter,
    );
    return { submitter, nonces: (store) => new ContractNonceProvider(submitter, store ?? state) };
  }

  const submitter = new ApiSubmitter({
    url: config.apiUrl ?? '',
    token: config.apiToken,
    chainId: config.chainId ?? 0n,
    requestTimeoutMs: config.requestTimeoutMs,
  });
  return { submitter, nonces: (store) => new StateNonceProvider(store) };
}

export interface Daemon {
  service: TelemetryService;
  state: StateStore;
  submitter: Submitter;
  /** Present when TELEMETRY_METRICS_PORT is set. */
  metrics: TelemetryMetrics | undefined;
  close(): Promise<void>;
}

/** Opens the state file and wires scanner, submitter and service together. */
export async function createDaemon(
  config: Config,
  wallet: Wallet,
  logger: Logger,
): Promise<Daemon> {
  const state = await StateStore.open(config.stateFile, logger);
  const stats = new TelemetryStats();
  const metrics =
    config.metricsPort === undefined
      ? undefined
      : new TelemetryMetrics({
          stats,
          logger,
          contractMode: config.mode === 'contract',
          minBalanceWei: config.minBalanceWei,
          signer: wallet.address,
        });
  const { submitter, nonces } = createSubmitter(config, wallet, state, metrics);
  const scanner = new LogScanner(config.logDir, {
    maxFileBytes: config.maxFileBytes,
    fullScanEvery: config.fullScanEvery,
    shard: config.shard,
  });
  const service = new TelemetryService({
    config,
    logger,
    state,
    scanner,
    submitter,
    nonces: nonces(state),
    wallet,
    stats,
    cycleObserver: metrics,
  });

  return {
    service,
    state,
    submitter,
    metrics,
    close: async () => {
      await submitter.close();
      await state.close();
    },
  };
}
