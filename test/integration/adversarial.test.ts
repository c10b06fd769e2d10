import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { Wallet } from 'ethers';
import { DaemonProcess, temporaryFolder } from '../support/daemon-process';
import { startIngestServer } from '../support/ingest-server';
import { seededRandom, writeJobLog } from '../support/log-factory';

/** Cases found by trying to break the daemon: each once cost a job its attestation or paid it twice. */

const ORACLE = '0x00000000000000000000000000000000000E0e0E';
const AGENT = '0x4D83E0BCc1CaD3eB9a321da3Ae0e30680F4ff7E8';

/** Starts a plain HTTP server on 127.0.0.1 whose responses the test decides. */
async function scriptedServer(
  handler: (request: http.IncomingMessage, body: string, response: http.ServerResponse) => void,
): Promise<{ url: string; close: () => Promise<void> }> {
  const server = http.createServer((request, response) => {
    let body = '';
    request.on('data', (chunk: Buffer) => (body += chunk.toString()));
    request.on('end', () => handler(request, body, response));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/attestations`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe('API mode edge cases', () => {
  const folder = temporaryFolder('adversarial-api');
  const signer = Wallet.createRandom();
  after(() => folder.cleanup());

  const env = (url: string, name: string, logs: string): Record<string, string> => ({
    ENERGY_LOG_DIR: logs,
    ENERGY_ORACLE_ADDRESS: ORACLE,
    ENERGY_ORACLE_SIGNER_KEY: signer.privateKey,
    ENERGY_ORACLE_API_URL: url,
    ENERGY_ORACLE_CHAIN_ID: '1',
    TELEMETRY_STATE_FILE: path.join(folder.path, `${name}.json`),
    TELEMETRY_POLL_INTERVAL_MS: '200',
    TELEMETRY_RETRY_DELAY_MS: '50',
    TELEMETRY_MAX_RETRIES: '3',
  });

  test('redirect not taken as acceptance', async () => {
    let gets = 0;
    const server = await scriptedServer((request, _body, response) => {
      if (request.method === 'GET') gets += 1;
      if (request.url === '/attestations') {
        response.writeHead(301, { location: '/v2/attestations' }).end();
      } else {
        response.writeHead(200, { 'content-type': 'application/json' }).end('[]');
      }
    });
    const logs = path.join(folder.path, 'redirect-logs');
    writeJobLog(logs, AGENT, '5', 1, Date.now() - 60_000, seededRandom(5));
    const daemon = new DaemonProcess(env(server.url, 'redirect', logs));
    try {
      await daemon.waitFor(
        (lines) => lines.some((l) => String(l.err).includes('redirected')),
        15_000,
        'the redirect rejection',
      );
    } finally {
      await daemon.stop();
      await server.close();
    }
    assert.equal(daemon.messages('attestation accepted').length, 0, 'nothing recorded as accepted');
    assert.equal(gets, 0, 'the attestation was never turned into a GET');
  });

  test('first 409 retried with same key', async () => {
    const keys: string[] = [];
    const bodies: string[] = [];
    const server = await scriptedServer((request, body, response) => {
      keys.push(String(request.headers['idempotency-key']));
      bodies.push(body);
      if (keys.length === 1) {
        response
          .writeHead(409, { 'content-type': 'application/json' })
          .end('{"error":"request in progress"}');
      } else {
        response.writeHead(201, { 'content-type': 'application/json' }).end('{"id":"att-1"}');
      }
    });
    const logs = path.join(folder.path, 'conflict-logs');
    writeJobLog(logs, AGENT, '6', 1, Date.now() - 60_000, seededRandom(6));
    const daemon = new DaemonProcess(env(server.url, 'conflict', logs));
    try {
      await daemon.waitForAccepted(1, 15_000);
    } finally {
      await daemon.stop();
      await server.close();
    }
    assert.equal(keys.length, 2);
    assert.equal(keys[0], keys[1], 'the retry used the same Idempotency-Key');
    const nonces = bodies.map(
      (body) => (JSON.parse(body) as { attestation: { nonce: string } }).attestation.nonce,
    );
    assert.deepEqual(nonces, ['1', '1'], 'no new nonce after a single 409');
  });

  test('newest of two files for one job wins', async () => {
    const server = await startIngestServer({
      chainId: 1n,
      verifyingContract: ORACLE,
      signers: [signer.address],
    });
    const logs = path.join(folder.path, 'duplicate-logs');
    const newer = writeJobLog(logs, AGENT, '12', 3, Date.now() - 60_000, seededRandom(2));
    fs.renameSync(newer, path.join(path.dirname(newer), '0x0c.json'));
    writeJobLog(logs, AGENT, '12', 1, Date.now() - 3 * 86_400_000, seededRandom(1));
    const daemon = new DaemonProcess(env(server.url, 'duplicate', logs));
    try {
      await daemon.waitForAccepted(1, 15_000);
      await new Promise((resolve) => setTimeout(resolve, 1000));
    } finally {
      await daemon.stop();
      await server.close();
    }
    assert.equal(server.accepted.length, 1);
    assert.equal(
      server.accepted[0]?.attestation.degeneracy,
      '3',
      'the three-stage revision was attested',
    );
    assert.ok(
      daemon.lines.some((l) =>
        String(l.msg).startsWith('two log files name the same agent and job'),
      ),
    );
  });
});
