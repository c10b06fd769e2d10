import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Wallet } from 'ethers';
import type { Chain } from '../support/chain';
import { ANVIL_KEYS, deployOracle, readAcceptances, startAnvil } from '../support/chain';
import {
  DaemonProcess,
  addressLogs,
  appendStage,
  copySamples,
  temporaryFolder,
} from '../support/daemon-process';
import type { IngestServer } from '../support/ingest-server';
import { startIngestServer } from '../support/ingest-server';

/** The operator commands, each run as a process against anvil or the test ingestion server. */

async function run(
  env: Record<string, string>,
  args: string[],
): Promise<{ code: number | null; daemon: DaemonProcess }> {
  const daemon = new DaemonProcess(env, args);
  const timer = setTimeout(() => void daemon.kill(), 60_000);
  const { code } = await daemon.exited;
  clearTimeout(timer);
  return { code, daemon };
}

/** Returns the output lines that are not pino log lines (tables, JSON documents, check results). */
function printed(daemon: DaemonProcess): string {
  return daemon.lines
    .filter((line) => line.level === 'raw')
    .map((line) => line.msg)
    .join('\n');
}

describe('operator commands in contract mode', () => {
  const folder = temporaryFolder('commands');
  const signer = new Wallet(ANVIL_KEYS[3]!);
  let chain: Chain;
  let oracle: Awaited<ReturnType<typeof deployOracle>>;
  let logs: string;
  const stateFile = (): string => path.join(folder.path, 'state.json');
  const env = (overrides: Record<string, string> = {}): Record<string, string> => ({
    ENERGY_LOG_DIR: logs,
    ENERGY_ORACLE_ADDRESS: oracle.address,
    ENERGY_ORACLE_SIGNER_KEY: signer.privateKey,
    ENERGY_ORACLE_RPC_URL: chain.rpcUrl,
    TELEMETRY_STATE_FILE: stateFile(),
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

  test('check passes every line', async () => {
    const { code, daemon } = await run(env(), ['check']);
    const text = printed(daemon);
    assert.equal(code, 0, text);
    for (const name of [
      'configuration',
      'signer key',
      'log folder',
      'state file',
      'RPC and oracle',
      'signer authorised',
      'signer funded',
    ]) {
      assert.match(text, new RegExp(`PASS  ${name}`), `${name} passes`);
    }
  });

  test('check names fix for unauthorised signer', async () => {
    const stranger = Wallet.createRandom();
    const { code, daemon } = await run(env({ ENERGY_ORACLE_SIGNER_KEY: stranger.privateKey }), [
      'check',
    ]);
    const text = printed(daemon);
    assert.equal(code, 1);
    assert.match(text, /FAIL {2}signer authorised/);
    assert.match(
      text,
      new RegExp(
        `fix: ask the oracle's governance to call setSigner\\(${stranger.address}, true\\)`,
      ),
    );
    assert.match(text, /FAIL {2}signer funded/);
  });

  test('check reports wrong chain id', async () => {
    const { code, daemon } = await run(env({ ENERGY_ORACLE_CHAIN_ID: '5' }), ['check']);
    assert.equal(code, 1);
    assert.match(
      printed(daemon),
      /FAIL {2}RPC and oracle .*chain id 31337 but ENERGY_ORACLE_CHAIN_ID is 5/,
    );
  });

  test('dry run signs, sends nothing', async () => {
    const { code, daemon } = await run(env(), ['--dry-run']);
    assert.equal(code, 0, daemon.tail());
    const attestations = daemon.lines
      .filter((line) => 'attestation' in line)
      .map((line) => line as unknown as { attestation: Record<string, string>; signature: string });
    assert.equal(attestations.length, addressLogs(logs).length);
    assert.ok(attestations.every((line) => /^0x[0-9a-f]{130}$/.test(line.signature)));
    assert.equal(
      (await readAcceptances(chain, oracle.address)).length,
      0,
      'nothing reached the chain',
    );
    assert.equal(fs.existsSync(stateFile()), false, 'no state file was written');
  });

  test('once delivers one batch, exits 0', async () => {
    const { code, daemon } = await run(env({ TELEMETRY_MAX_BATCH: '5' }), ['--once']);
    assert.equal(code, 0, daemon.tail());
    assert.equal(daemon.messages('attestation accepted').length, 5);
    assert.equal((await readAcceptances(chain, oracle.address)).length, 5);
  });

  test('status table shows done and due', async () => {
    const { code, daemon } = await run(env(), ['status']);
    const text = printed(daemon);
    assert.equal(code, 0, daemon.tail());
    assert.match(text, /jobs done +5/);
    assert.match(text, /daemon +not running/);
    assert.match(text, /log files +16 \(7 due, 4 skipped\)/);
  });

  test('status json for machines', async () => {
    const { code, daemon } = await run(env(), ['status', '--json']);
    assert.equal(code, 0);
    const report = JSON.parse(printed(daemon)) as {
      done: number;
      lastNonces: Record<string, string>;
      logs: { due: number };
    };
    assert.equal(report.done, 5);
    assert.equal(report.logs.due, 7);
    assert.equal(
      Object.values(report.lastNonces).reduce((sum, nonce) => sum + Number(nonce), 0),
      5,
    );
  });

  test('status traces one job', async () => {
    const first = (await readAcceptances(chain, oracle.address))[0]!;
    const { code, daemon } = await run(env(), ['status', first.user, first.jobId.toString()]);
    const text = printed(daemon);
    assert.equal(code, 0);
    assert.match(text, /signed +revision .* nonce 1 deadline \d+ digest 0x[0-9a-f]{64}/);
    assert.match(text, new RegExp(`sent +transaction ${first.txHash}`));
    assert.match(text, new RegExp(`accepted +revision .* nonce 1 reference ${first.txHash}`));
  });

  test('once exits 1 when a job fails', async () => {
    await (await oracle.contract.getFunction('setSigner')(signer.address, false)).wait();
    const { code, daemon } = await run(env({ TELEMETRY_MAX_BATCH: '2' }), ['--once']);
    await (await oracle.contract.getFunction('setSigner')(signer.address, true)).wait();
    assert.equal(code, 1, daemon.tail());
    assert.ok(daemon.lines.some((line) => line.reason === 'signer-not-authorised'));
  });

  test('metrics and health served', async () => {
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    const daemon = new DaemonProcess(
      env({ TELEMETRY_METRICS_PORT: String(port), TELEMETRY_POLL_INTERVAL_MS: '200' }),
    );
    try {
      await daemon.waitFor(
        (lines) => lines.filter((l) => l.msg === 'attestation accepted').length >= 7,
        30_000,
        'the remaining jobs',
      );
      const base = `http://127.0.0.1:${port}`;
      const health = await fetch(`${base}/healthz`);
      assert.equal(health.status, 200);
      const ready = await fetch(`${base}/readyz`);
      assert.equal(ready.status, 200, await ready.text());
      const metrics = await (await fetch(`${base}/metrics`)).text();
      assert.match(metrics, /operator_telemetry_attestations_accepted_total 7/);
      assert.match(metrics, /operator_telemetry_files_skipped_total\{reason="invalid-agent"\} 4/);
      assert.match(metrics, /operator_telemetry_gas_spent_wei_total [1-9]/);
    } finally {
      await daemon.stop();
    }
  });

  test('new stage picked up without waiting', async () => {
    const daemon = new DaemonProcess(env({ TELEMETRY_POLL_INTERVAL_MS: '60000' }));
    try {
      await daemon.waitFor(
        (lines) => lines.some((l) => l.msg === 'connected'),
        10_000,
        'connected',
      );
      await new Promise((resolve) => setTimeout(resolve, 500));
      const job = addressLogs(logs)[0]!;
      const writtenAt = Date.now();
      appendStage(job.file, 4, writtenAt);
      await daemon.waitForAccepted(1, 10_000);
      assert.ok(Date.now() - writtenAt < 10_000, 'delivered long before the 60 s poll interval');
    } finally {
      await daemon.stop();
    }
  });
});

describe('shards split the agents', () => {
  const folder = temporaryFolder('shards');
  const signer = Wallet.createRandom();
  const oracleAddress = '0x00000000000000000000000000000000000E0e0E';
  let server: IngestServer;

  before(async () => {
    server = await startIngestServer({
      chainId: 1n,
      verifyingContract: oracleAddress,
      signers: [signer.address],
    });
  });

  after(async () => {
    await server.close();
    folder.cleanup();
  });

  test('two shards deliver each once', async () => {
    const logs = copySamples(folder.path);
    const expected = addressLogs(logs);
    const shards = [0, 1].map(
      (index) =>
        new DaemonProcess({
          ENERGY_LOG_DIR: logs,
          ENERGY_ORACLE_ADDRESS: oracleAddress,
          ENERGY_ORACLE_SIGNER_KEY: signer.privateKey,
          ENERGY_ORACLE_API_URL: server.url,
          ENERGY_ORACLE_CHAIN_ID: '1',
          TELEMETRY_SHARD: `${index}/2`,
          TELEMETRY_STATE_FILE: path.join(folder.path, `shard-${index}.json`),
          TELEMETRY_POLL_INTERVAL_MS: '200',
        }),
    );
    const deadline = Date.now() + 30_000;
    while (server.accepted.length < expected.length && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
    await Promise.all(shards.map((shard) => shard.stop()));

    const seen = server.accepted.map(
      (record) => `${record.attestation.user}:${record.attestation.jobId}`,
    );
    assert.equal(seen.length, expected.length, 'every job once');
    assert.equal(new Set(seen).size, seen.length, 'no job twice');
    const agentsPerShard = shards.map(
      (shard) => new Set(shard.messages('attestation accepted').map((line) => String(line.agent))),
    );
    for (const agent of agentsPerShard[0]!)
      assert.equal(agentsPerShard[1]!.has(agent), false, `${agent} in one shard only`);
    assert.ok(agentsPerShard[0]!.size + agentsPerShard[1]!.size === 3, 'all three agents served');
  });
});
