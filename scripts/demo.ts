/**
 * Demo: the daemon delivering attestations to a local chain with no configuration at all.
 *
 * Starts anvil on 127.0.0.1, deploys the project's EnergyOracle-compatible test contract,
 * authorises a throwaway signer, copies the sample logs into a temporary folder, runs the
 * built daemon until every job is attested, prints a table read back from the chain, and
 * removes everything it started.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Wallet, parseEther } from 'ethers';
import { ANVIL_KEYS, deployOracle, readAcceptances, startAnvil } from '../test/support/chain';
import {
  DaemonProcess,
  addressLogs,
  copySamples,
  temporaryFolder,
} from '../test/support/daemon-process';

async function main(): Promise<void> {
  const folder = temporaryFolder('operator-telemetry-demo');
  const chain = await startAnvil();
  let daemon: DaemonProcess | undefined;

  try {
    console.log(`local chain: ${chain.rpcUrl} (chain id ${chain.chainId})`);
    const signer = Wallet.createRandom();
    const oracle = await deployOracle(chain, { signers: [signer.address] });
    const funder = new Wallet(ANVIL_KEYS[0]!, chain.provider);
    await (await funder.sendTransaction({ to: signer.address, value: parseEther('1') })).wait();
    console.log(
      `EnergyOracle deployed at ${oracle.address}; signer ${signer.address} authorised and funded`,
    );

    const logs = copySamples(folder.path);
    const jobs = addressLogs(logs);
    console.log(
      `${jobs.length} job logs with address agents copied to ${logs} (plus one ENS-named agent, which is skipped)\n`,
    );

    daemon = new DaemonProcess({
      ENERGY_LOG_DIR: logs,
      ENERGY_ORACLE_ADDRESS: oracle.address,
      ENERGY_ORACLE_RPC_URL: chain.rpcUrl,
      ENERGY_ORACLE_SIGNER_KEY: signer.privateKey,
      TELEMETRY_STATE_FILE: path.join(folder.path, 'state.json'),
      TELEMETRY_POLL_INTERVAL_MS: '1000',
    });
    await daemon.waitForAccepted(jobs.length, 60_000);
    await daemon.stop();

    for (const line of daemon.lines) {
      if (line.msg === 'attestation accepted') {
        console.log(
          `accepted  agent ${String(line.agent)}  job ${String(line.jobId)}  nonce ${String(line.nonce)}  tx ${String(line.reference).slice(0, 18)}…`,
        );
      } else if (line.level === 'warn' || line.level === 'error') {
        console.log(
          `${line.level.padEnd(8)}  ${line.msg}  (${String(line.file ?? line.path ?? '')})`,
        );
      }
    }

    const acceptances = await readAcceptances(chain, oracle.address);
    const agents = [...new Set(jobs.map((job) => job.agent))].sort();
    console.log(
      '\nagent                                        jobs attested  nonces(agent) on chain',
    );
    for (const agent of agents) {
      const attested = acceptances.filter((a) => a.user === agent).length;
      const nonce = (await oracle.contract.getFunction('nonces')(agent)) as bigint;
      console.log(`${agent}   ${String(attested).padStart(13)}  ${String(nonce).padStart(22)}`);
    }
    const total = acceptances.length;
    console.log(`\n${total} of ${jobs.length} jobs attested on chain, each exactly once.`);
    if (total !== jobs.length) process.exitCode = 1;
  } finally {
    if (daemon?.running) await daemon.kill();
    await chain.stop();
    folder.cleanup();
    fs.rmSync(folder.path, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(`demo failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
});
