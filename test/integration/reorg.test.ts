import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Wallet } from 'ethers';
import type { Chain } from '../support/chain';
import { ANVIL_KEYS, deployOracle, readAcceptances, startAnvil } from '../support/chain';
import {
  DaemonProcess,
  addressLogs,
  copySamples,
  temporaryFolder,
} from '../support/daemon-process';

/**
 * A re-org that removes a transaction before it has TELEMETRY_CONFIRMATIONS blocks: the
 * daemon must notice and broadcast the same transaction again, and count the revision as
 * done only once it is confirmed on the final chain.
 */

const folder = temporaryFolder('reorg');
const signer = new Wallet(ANVIL_KEYS[2]!);
let chain: Chain;

before(async () => {
  chain = await startAnvil({ blockTime: 1 });
});

after(async () => {
  await chain.stop();
  folder.cleanup();
});

test('re-orged transaction sent again once', async () => {
  const oracle = await deployOracle(chain, { signers: [signer.address] });
  const logs = copySamples(folder.path);
  const expected = addressLogs(logs).length;
  const daemon = new DaemonProcess({
    ENERGY_LOG_DIR: logs,
    ENERGY_ORACLE_ADDRESS: oracle.address,
    ENERGY_ORACLE_SIGNER_KEY: signer.privateKey,
    ENERGY_ORACLE_RPC_URL: chain.rpcUrl,
    TELEMETRY_STATE_FILE: path.join(folder.path, 'state.json'),
    TELEMETRY_CONFIRMATIONS: '3',
    TELEMETRY_POLL_INTERVAL_MS: '200',
    TELEMETRY_RETRY_DELAY_MS: '50',
  });

  try {
    // Wait for the first attestation to be mined, then remove its block before it has three confirmations.
    const deadline = Date.now() + 20_000;
    let first = (await readAcceptances(chain, oracle.address))[0];
    while (first === undefined && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      first = (await readAcceptances(chain, oracle.address))[0];
    }
    assert.ok(first, 'a first attestation was mined');
    await new Promise((resolve) => setTimeout(resolve, 800)); // The daemon polls receipts every 250 ms.
    const head = await chain.provider.getBlockNumber();
    await chain.provider.send('anvil_reorg', [head - first.blockNumber + 1, []]);
    assert.equal(
      await chain.provider.getTransactionReceipt(first.txHash),
      null,
      'the re-org removed the transaction',
    );

    // Keep making blocks so that confirmations can accumulate.
    const miner = setInterval(
      () => void chain.provider.send('evm_mine', []).catch(() => undefined),
      200,
    );
    try {
      await daemon.waitForAccepted(expected, 60_000);
    } finally {
      clearInterval(miner);
    }
  } finally {
    await daemon.stop();
  }

  assert.ok(
    daemon.lines.some(
      (line) => line.msg === 'transaction left the chain in a re-org; broadcasting it again',
    ),
    'the daemon noticed the re-org',
  );
  const acceptances = await readAcceptances(chain, oracle.address);
  assert.equal(acceptances.length, expected, 'one acceptance per job on the final chain');
  const head = await chain.provider.getBlockNumber();
  for (const acceptance of acceptances) {
    assert.ok(
      head - acceptance.blockNumber + 1 >= 3,
      `job ${acceptance.jobId} has three confirmations`,
    );
  }
});
