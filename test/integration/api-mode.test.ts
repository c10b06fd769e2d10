import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Wallet } from 'ethers';
import type { IngestServer } from '../support/ingest-server';
import { startIngestServer } from '../support/ingest-server';
import {
  DaemonProcess,
  addressLogs,
  appendStage,
  copySamples,
  expectedFields,
  temporaryFolder,
} from '../support/daemon-process';

const ORACLE = '0x00000000000000000000000000000000000E0e0E';
const CHAIN_ID = 31337n;
const TOKEN = 'test-token-7f3a9c';

describe('API mode end to end', () => {
  const folder = temporaryFolder('api-mode');
  const signer = Wallet.createRandom();
  let server: IngestServer;
  let clockOffsetSec = 0;
  let logs: string;

  const env = (overrides: Record<string, string> = {}): Record<string, string> => ({
    ENERGY_LOG_DIR: logs,
    ENERGY_ORACLE_ADDRESS: ORACLE,
    ENERGY_ORACLE_SIGNER_KEY: signer.privateKey,
    ENERGY_ORACLE_API_URL: server.url,
    ENERGY_ORACLE_API_TOKEN: TOKEN,
    ENERGY_ORACLE_CHAIN_ID: CHAIN_ID.toString(),
    TELEMETRY_STATE_FILE: path.join(folder.path, 'state', 'state.json'),
    TELEMETRY_POLL_INTERVAL_MS: '300',
    TELEMETRY_RETRY_DELAY_MS: '50',
    TELEMETRY_MAX_RETRIES: '2',
    ...overrides,
  });

  before(async () => {
    logs = copySamples(folder.path);
    server = await startIngestServer({
      chainId: CHAIN_ID,
      verifyingContract: ORACLE,
      signers: [signer.address],
      token: TOKEN,
      now: () => Date.now() / 1000 + clockOffsetSec,
    });
  });

  after(async () => {
    await server.close();
    folder.cleanup();
  });

  test('attests every address log exactly once', async () => {
    const expected = addressLogs(logs);
    const daemon = new DaemonProcess(env());
    await daemon.waitForAccepted(expected.length);
    const { code } = await daemon.stop();

    assert.equal(code, 0);
    assert.equal(server.accepted.length, expected.length);
    for (const log of expected) {
      const matches = server.accepted.filter(
        (record) => record.attestation.user === log.agent && record.attestation.jobId === log.jobId,
      );
      assert.equal(matches.length, 1, `${log.agent}/${log.jobId} accepted once`);
      const { nonce: _nonce, deadline: _deadline, ...fields } = matches[0]!.attestation;
      assert.deepEqual(fields, expectedFields(log.file));
    }
  });

  test('nonces rise from one per agent', () => {
    const byAgent = new Map<string, string[]>();
    for (const record of server.accepted) {
      const list = byAgent.get(record.attestation.user!) ?? [];
      list.push(record.attestation.nonce!);
      byAgent.set(record.attestation.user!, list);
    }
    for (const [agent, nonces] of byAgent) {
      assert.deepEqual(
        nonces,
        nonces.map((_, index) => String(index + 1)),
        agent,
      );
    }
  });

  test('ENS-named agent skipped with reason', () => {
    const attested = server.accepted.filter((record) => !/^0x/.test(record.attestation.user ?? ''));
    assert.equal(attested.length, 0);
  });

  test('restart sends nothing again', async () => {
    const before = server.requests.length;
    const daemon = new DaemonProcess(env());
    await daemon.waitFor((lines) => lines.some((l) => l.msg === 'connected'), 10_000, 'connected');
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await daemon.stop();

    assert.equal(server.requests.length, before);
    assert.equal(daemon.messages('attestation accepted').length, 0);
  });

  test('new stage attests that job once more', async () => {
    const [first, second] = addressLogs(logs);
    const daemon = new DaemonProcess(env());
    await daemon.waitFor((lines) => lines.some((l) => l.msg === 'connected'), 10_000, 'connected');
    const acceptedBefore = server.accepted.length;
    appendStage(first!.file, 12.5, Date.now());

    await daemon.waitForAccepted(1);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    await daemon.stop();

    assert.equal(server.accepted.length, acceptedBefore + 1);
    const latest = server.accepted[server.accepted.length - 1]!.attestation;
    assert.equal(latest.jobId, first!.jobId);
    assert.equal(latest.user, first!.agent);
    assert.equal(latest.degeneracy, expectedFields(first!.file).degeneracy);
    assert.notEqual(second!.jobId, first!.jobId);
  });

  test('unauthorised signer leaves jobs pending', async () => {
    const job = addressLogs(logs)[1]!;
    server.setSigners([]);
    appendStage(job.file, 3, Date.now());
    const acceptedBefore = server.accepted.length;

    const daemon = new DaemonProcess(env({ TELEMETRY_DEADLINE_BUFFER_SEC: '60' }));
    await daemon.waitFor(
      (lines) =>
        lines.some(
          (l) => l.msg.startsWith('attestation rejected') && l.reason === 'signer-not-authorised',
        ),
      15_000,
      'a rejection for the unauthorised signer',
    );
    await daemon.stop();

    assert.equal(server.accepted.length, acceptedBefore);
    const rejection = daemon.lines.find((l) => l.reason === 'signer-not-authorised');
    assert.match(String(rejection?.err), /403/);
  });

  test('expired deadline detected, not counted', async () => {
    server.setSigners([signer.address]);
    clockOffsetSec = 7200; // Every deadline the daemon signs is in the server's past.
    const acceptedBefore = server.accepted.length;

    const daemon = new DaemonProcess(env());
    await daemon.waitFor(
      (lines) => lines.some((l) => l.reason === 'deadline-passed'),
      15_000,
      'a rejection for the passed deadline',
    );
    assert.equal(server.accepted.length, acceptedBefore);
    assert.ok(daemon.lines.some((l) => String(l.msg).startsWith('deadline passed; signing again')));

    clockOffsetSec = 0;
    await daemon.waitForAccepted(1);
    await daemon.stop();

    assert.equal(server.accepted.length, acceptedBefore + 1);
    const expiredAnswers = server.requests.filter((request) => request.status === 422);
    assert.ok(expiredAnswers.length >= 1, 'the server saw expired attestations');
  });

  test('token never appears in output', () => {
    const stateText = fs.readFileSync(path.join(folder.path, 'state', 'state.json'), 'utf8');
    assert.equal(stateText.includes(TOKEN), false);
    assert.equal(stateText.includes(signer.privateKey.slice(2)), false);
  });
});
