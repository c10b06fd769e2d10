import fs from 'node:fs';
import type { Wallet } from 'ethers';
import { formatEther } from 'ethers';
import type { Config } from './config';
import { describeError } from './errors';
import { StateStore } from './state';
import { readOwner } from './state-lock';
import { ContractSubmitter } from './submitter-contract';
import pino from 'pino';

/**
 * The `check` command: each thing the daemon needs, checked once, with a pass or a fail
 * and what to do about a fail.
 */

export interface CheckResult {
  name: string;
  ok: boolean;
  detail: string;
  fix?: string | undefined;
}

export async function runChecks(
  config: Config,
  wallet: Wallet,
  unknownVariables: string[],
): Promise<CheckResult[]> {
  const results: CheckResult[] = [
    {
      name: 'configuration',
      ok: true,
      detail:
        unknownVariables.length === 0
          ? `valid, ${config.mode} mode`
          : `valid, ${config.mode} mode; ignored unknown variables: ${unknownVariables.join(', ')}`,
    },
    { name: 'signer key', ok: true, detail: `loaded, address ${wallet.address}` },
    checkLogDir(config.logDir),
    checkStateFile(config.stateFile),
  ];

  if (config.mode === 'contract') results.push(...(await checkContract(config, wallet)));
  else results.push(await checkApi(config));
  return results;
}

export function formatChecks(results: CheckResult[]): string {
  return results
    .map((result) => {
      const line = `${result.ok ? 'PASS' : 'FAIL'}  ${result.name.padEnd(18)} ${result.detail}`;
      return result.ok || result.fix === undefined ? line : `${line}\n      fix: ${result.fix}`;
    })
    .join('\n');
}

function checkLogDir(logDir: string): CheckResult {
  try {
    if (fs.statSync(logDir).isDirectory()) return { name: 'log folder', ok: true, detail: logDir };
    return {
      name: 'log folder',
      ok: false,
      detail: `${logDir} is not a folder`,
      fix: 'point ENERGY_LOG_DIR at the orchestrator log folder',
    };
  } catch {
    return {
      name: 'log folder',
      ok: false,
      detail: `${logDir} does not exist`,
      fix: 'point ENERGY_LOG_DIR at the orchestrator log folder (the daemon waits for it to appear)',
    };
  }
}

function checkStateFile(stateFile: string): CheckResult {
  const name = 'state file';
  if (!fs.existsSync(stateFile))
    return { name, ok: true, detail: `${stateFile} (not created yet; the first run creates it)` };
  try {
    const state = StateStore.readOnly(stateFile, pino({ level: 'silent' }));
    const owner = readOwner(`${stateFile}.lock`);
    const owned = owner === undefined ? '' : `; lock held by pid ${owner.pid} on ${owner.hostname}`;
    return {
      name,
      ok: true,
      detail: `${stateFile}: ${state.doneCount()} jobs done, ${state.pending().length} pending${owned}`,
    };
  } catch (error) {
    return {
      name,
      ok: false,
      detail: describeError(error),
      fix: 'restore the state file from a backup',
    };
  }
}

async function checkContract(config: Config, wallet: Wallet): Promise<CheckResult[]> {
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
    wallet,
  );
  const results: CheckResult[] = [];
  try {
    const target = await submitter.connect();
    results.push({
      name: 'RPC and oracle',
      ok: true,
      detail: `${target.target}, chain id ${target.chainId}, contract code found`,
    });
  } catch (error) {
    results.push({
      name: 'RPC and oracle',
      ok: false,
      detail: describeError(error),
      fix: 'check ENERGY_ORACLE_RPC_URL, ENERGY_ORACLE_ADDRESS and ENERGY_ORACLE_CHAIN_ID',
    });
    await submitter.close();
    return results;
  }

  try {
    const authorised = await submitter.signerAuthorised();
    results.push(
      authorised
        ? { name: 'signer authorised', ok: true, detail: `isSigner(${wallet.address}) is true` }
        : {
            name: 'signer authorised',
            ok: false,
            detail: `isSigner(${wallet.address}) is false`,
            fix: `ask the oracle's governance to call setSigner(${wallet.address}, true)`,
          },
    );

    const balance = await submitter.signerBalance();
    const floor = config.minBalanceWei ?? 1n;
    results.push(
      balance >= floor
        ? { name: 'signer funded', ok: true, detail: `${formatEther(balance)} ether` }
        : {
            name: 'signer funded',
            ok: false,
            detail: `${formatEther(balance)} ether, below ${formatEther(floor)}`,
            fix: `send ether to ${wallet.address} to pay for gas`,
          },
    );
  } catch (error) {
    results.push({
      name: 'signer',
      ok: false,
      detail: describeError(error),
      fix: 'check the RPC endpoint',
    });
  } finally {
    await submitter.close();
  }
  return results;
}

/** Checks that the API is reachable. It has no health route, so any HTTP response below 500 passes. */
async function checkApi(config: Config): Promise<CheckResult> {
  const url = config.apiUrl ?? '';
  try {
    const response = await fetch(url, {
      method: 'OPTIONS',
      signal: AbortSignal.timeout(config.requestTimeoutMs),
    });
    await response.body?.cancel();
    if (response.status >= 500) {
      return {
        name: 'API',
        ok: false,
        detail: `${url} responded ${response.status}, a server fault`,
        fix: 'check the ingestion service and ENERGY_ORACLE_API_URL',
      };
    }
    return {
      name: 'API',
      ok: true,
      detail: `${url} answered ${response.status}; chain id ${config.chainId} for signatures`,
    };
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause?.code ?? describeError(error);
    return {
      name: 'API',
      ok: false,
      detail: `${url} is unreachable (${cause})`,
      fix: 'check ENERGY_ORACLE_API_URL and the network',
    };
  }
}
