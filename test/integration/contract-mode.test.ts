import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Wallet } from 'ethers';
import type { Chain } from '../support/chain';
import {
  ANVIL_KEYS,
  deployOracle,
  increaseTime,
  readAcceptances,
  startAnvil,
} from '../support/chain';
import {
  DaemonProcess,
  addressLogs,
  appendStage,
  copySamples,
  expectedFields,
  temporaryFolder,
} from '../support/daemon-process';

describe('contract mode end to end', () => {
  const folder = temporaryFolder('contract-mode');
  const signer = new Wallet(ANVIL_KEYS[1]!);
  let chain: Chain;
  let oracle: Awaited<ReturnType<typeof deployOracle>>;
  let logs: string;

  const env = (overrides: Record<string, string> = {}): Record<string, string> => ({
    ENERGY_LOG_DIR: logs,
    ENERGY_ORACLE_ADDRESS: oracle.address,
    ENERGY_ORACLE_SIGNER_KEY: signer.privateKey,
    ENERGY_ORACLE_RPC_URL: chain.rpcUrl,
    TELEMETRY_STATE_FILE: path.join(folder.path, 'state', 'state.json'),
    TELEMETRY_POLL_INTERVAL_MS: '300',
    TELEMETRY_RETRY_DELAY_MS: '50',
    TELEMETRY_MAX_RETRIES: '2',
    ...overrides,
  });

  before(async () => {
    logs = copySamples(folder.path);
    chain = await startAnvil();
    oracle = await deployOracle(chain, { signers: [signer.address] });
  });

  after(async () => {
    await chain.stop();
    folder.cleanup();
  });

  test('attests every address log exactly once', async () => {
    const expected = addressLogs(logs);
    const daemon = new DaemonProcess(env());
    await daemon.waitForAccepted(expected.length);
    const { code } = await daemon.stop();
    assert.equal(code, 0);

    const acceptances = await readAcceptances(chain, oracle.address);
    assert.equal(acceptances.length, expected.length);
    const hashes = new Set(acceptances.map((a) => a.txHash));
    for (const line of daemon.messages('attestation accepted')) {
      assert.ok(
        hashes.has(String(line.reference)),
        `reference ${String(line.reference)} is an accepting transaction`,
      );
    }
    for (const log of expected) {
      const matches = acceptances.filter(
        (a) => a.user === log.agent && a.jobId === BigInt(log.jobId),
      );
      assert.equal(matches.length, 1, `${log.agent}/${log.jobId} accepted once`);
      const att = matches[0]!.att;
      const fields = Object.fromEntries(
        ['jobId', 'user', 'energy', 'degeneracy', 'epochId', 'role', 'uPre', 'uPost', 'value'].map(
          (name) => [name, String(att[name as keyof typeof att])],
        ),
      );
      assert.deepEqual(fields, expectedFields(log.file));
    }
  });

  test('nonces on chain match accepted count', async () => {
    const acceptances = await readAcceptances(chain, oracle.address);
    for (const agent of new Set(acceptances.map((a) => a.user))) {
      const count = acceptances.filter((a) => a.user === agent).length;
      assert.equal(await oracle.contract.getFunction('nonces')(agent), BigInt(count), agent);
    }
  });

  test('restart sends nothing again', async () => {
    const before = await chain.provider.getTransactionCount(signer.address);
    const daemon = new DaemonProcess(env());
    await daemon.waitFor((lines) => lines.some((l) => l.msg === 'connected'), 10_000, 'connected');
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await daemon.stop();

    assert.equal(await chain.provider.getTransactionCount(signer.address), before);
    assert.equal(daemon.messages('attestation accepted').length, 0);
  });

  test('new stage attests that job once more', async () => {
    const [first] = addressLogs(logs);
    const before = (await readAcceptances(chain, oracle.address)).length;
    const daemon = new DaemonProcess(env());
    await daemon.waitFor((lines) => lines.some((l) => l.msg === 'connected'), 10_000, 'connected');
    appendStage(first!.file, 12.5, Date.now());
    await daemon.waitForAccepted(1);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    await daemon.stop();

    const acceptances = await readAcceptances(chain, oracle.address);
    assert.equal(acceptances.length, before + 1);
    const latest = acceptances[acceptances.length - 1]!;
    assert.equal(latest.user, first!.agent);
    assert.equal(latest.jobId, BigInt(first!.jobId));
  });

  test('unauthorised signer leaves jobs pending', async () => {
    const job = addressLogs(logs)[1]!;
    await (await oracle.contract.getFunction('setSigner')(signer.address, false)).wait();
    appendStage(job.file, 3, Date.now());
    const before = (await readAcceptances(chain, oracle.address)).length;

    const daemon = new DaemonProcess(env());
    await daemon.waitFor(
      (lines) => lines.some((l) => l.reason === 'signer-not-authorised'),
      15_000,
      'a rejection for the unauthorised signer',
    );
    await daemon.stop();

    assert.equal((await readAcceptances(chain, oracle.address)).length, before);
    assert.ok(daemon.lines.some((l) => l.msg.startsWith('the signer is not authorised')));
    const rejection = daemon.lines.find((l) => l.reason === 'signer-not-authorised');
    assert.match(String(rejection?.err), /not authorised/);
  });

  test('expired deadline detected, signed again', async () => {
    await (await oracle.contract.getFunction('setSigner')(signer.address, true)).wait();
    await increaseTime(chain, 7200); // The pending revision's deadline is now in the chain's past.
    const before = (await readAcceptances(chain, oracle.address)).length;

    const daemon = new DaemonProcess(env());
    await daemon.waitForAccepted(1);
    await daemon.stop();

    assert.ok(daemon.lines.some((l) => String(l.msg).startsWith('deadline passed; signing again')));
    const acceptances = await readAcceptances(chain, oracle.address);
    assert.equal(acceptances.length, before + 1);
    const block = await chain.provider.getBlock(acceptances[acceptances.length - 1]!.blockNumber);
    assert.ok(acceptances[acceptances.length - 1]!.att.deadline >= BigInt(block!.timestamp));
  });

  test('empty state refused when oracle has attestations', async () => {
    const before = (await readAcceptances(chain, oracle.address)).length;
    const fresh = path.join(folder.path, 'state', 'fresh.json');
    const daemon = new DaemonProcess(env({ TELEMETRY_STATE_FILE: fresh }));
    const { code } = await daemon.exited;

    assert.equal(code, 65);
    const fatal = daemon.lines.find((line) => line.level === 'fatal');
    assert.match(
      String(fatal?.msg),
      /fresh\.json is empty, but the oracle already accepted attestations for 3 of the 3 agents/,
    );
    assert.match(String(fatal?.msg), /TELEMETRY_ALLOW_EMPTY_STATE=true/);
    assert.equal((await readAcceptances(chain, oracle.address)).length, before, 'nothing was sent');
  });
});
