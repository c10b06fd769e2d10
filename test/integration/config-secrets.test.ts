import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Wallet } from 'ethers';
import type { Chain } from '../support/chain';
import { deployOracle, startAnvil } from '../support/chain';
import { DaemonProcess, REPO_ROOT, copySamples, temporaryFolder } from '../support/daemon-process';
import { startIngestServer } from '../support/ingest-server';

/** A key and a token that are easy to find in any output. */
const KEY = '0x' + 'c0ffee'.repeat(10) + 'c0ff';
const KEY_DIGITS = KEY.slice(2);
const TOKEN = 'tok-SECRET-4f1d9a2b7e';
const ORACLE = '0x00000000000000000000000000000000000E0e0E';

function assertNoSecret(text: string, where: string): void {
  assert.equal(text.includes(KEY_DIGITS), false, `the signer key appears in ${where}`);
  assert.equal(text.includes(TOKEN), false, `the API token appears in ${where}`);
}

async function runToExit(
  env: Record<string, string>,
  args: string[] = [],
  cwd = REPO_ROOT,
): Promise<{ code: number | null; daemon: DaemonProcess }> {
  const daemon = new DaemonProcess(env, args, cwd);
  const timer = setTimeout(() => void daemon.kill(), 20_000);
  const { code } = await daemon.exited;
  clearTimeout(timer);
  return { code, daemon };
}

describe('configuration errors', () => {
  const folder = temporaryFolder('config');
  after(() => folder.cleanup());

  test('every problem reported, exit 78', async () => {
    const { code, daemon } = await runToExit({
      TELEMETRY_MODE: 'sideways',
      TELEMETRY_ROLE: '256',
      TELEMETRY_POLL_INTERVAL_MS: '0',
      TELEMETRY_ENERGY_SCALING: 'NaN',
      ENERGY_ORACLE_ADDRESS: '0x5B38Da6a701c568545dCfcB03FcB875f56beddc4',
      ENERGY_ORACLE_SIGNER_KEY: KEY.slice(0, 20),
      ENERGY_ORACLE_RPC_URL: 'ftp://127.0.0.1:1',
    });
    assert.equal(code, 78);
    const fatal = daemon.lines.find((line) => line.level === 'fatal');
    const problems = (fatal?.problems as string[] | undefined) ?? [];
    for (const variable of [
      'TELEMETRY_MODE',
      'TELEMETRY_ROLE',
      'TELEMETRY_POLL_INTERVAL_MS',
      'TELEMETRY_ENERGY_SCALING',
      'ENERGY_ORACLE_ADDRESS',
      'ENERGY_ORACLE_SIGNER_KEY',
      'ENERGY_ORACLE_RPC_URL',
    ]) {
      assert.ok(
        problems.some((problem) => problem.startsWith(variable)),
        `${variable} is reported`,
      );
    }
    assert.equal(daemon.output.includes(KEY.slice(2, 20)), false, 'a partial key is not echoed');
  });

  test('role zero accepted', async () => {
    const { code, daemon } = await runToExit(
      {
        TELEMETRY_ROLE: '0',
        ENERGY_ORACLE_ADDRESS: ORACLE,
        ENERGY_ORACLE_SIGNER_KEY: KEY,
        ENERGY_ORACLE_API_URL: 'http://127.0.0.1:9/attestations',
        ENERGY_ORACLE_CHAIN_ID: '1',
        ENERGY_LOG_DIR: path.join(folder.path, 'none'),
        TELEMETRY_STATE_FILE: path.join(folder.path, 'role-zero.json'),
      },
      ['--dry-run'],
    );
    assert.equal(code, 0, daemon.tail());
  });

  test('unknown variable warned as typo', async () => {
    const { daemon } = await runToExit(
      {
        TELEMETRY_POLL_INTERVALL_MS: '5',
        ENERGY_ORACLE_ADDRESS: ORACLE,
        ENERGY_ORACLE_SIGNER_KEY: KEY,
        ENERGY_ORACLE_API_URL: 'http://127.0.0.1:9/attestations',
        ENERGY_ORACLE_CHAIN_ID: '1',
        ENERGY_LOG_DIR: path.join(folder.path, 'none'),
        TELEMETRY_STATE_FILE: path.join(folder.path, 'typo.json'),
      },
      ['--dry-run'],
    );
    // With --dry-run the log lines go to stderr, next to the attestations on stdout.
    assert.match(daemon.output, /TELEMETRY_POLL_INTERVALL_MS is not a variable this daemon reads/);
  });

  test('two key sources rejected', async () => {
    const keyFile = path.join(folder.path, 'key');
    fs.writeFileSync(keyFile, KEY);
    const { code, daemon } = await runToExit({
      ENERGY_ORACLE_ADDRESS: ORACLE,
      ENERGY_ORACLE_SIGNER_KEY: KEY,
      ENERGY_ORACLE_SIGNER_KEY_FILE: keyFile,
      ENERGY_ORACLE_API_URL: 'http://127.0.0.1:9/attestations',
      ENERGY_ORACLE_CHAIN_ID: '1',
    });
    assert.equal(code, 78);
    assert.match(daemon.output, /more than one signer key source/);
    assertNoSecret(daemon.output, 'the output');
  });

  test('token over plain http refused', async () => {
    const { code, daemon } = await runToExit({
      ENERGY_ORACLE_ADDRESS: ORACLE,
      ENERGY_ORACLE_SIGNER_KEY: KEY,
      ENERGY_ORACLE_API_URL: 'http://ingest.example/attestations',
      ENERGY_ORACLE_API_TOKEN: TOKEN,
      ENERGY_ORACLE_CHAIN_ID: '1',
    });
    assert.equal(code, 78);
    assert.match(daemon.output, /token would travel unencrypted/);
    assertNoSecret(daemon.output, 'the output');
  });

  test('KEY=VALUE arguments override environment', async () => {
    const { code, daemon } = await runToExit(
      {
        TELEMETRY_ROLE: '999',
        ENERGY_ORACLE_ADDRESS: ORACLE,
        ENERGY_ORACLE_SIGNER_KEY: KEY,
        ENERGY_ORACLE_API_URL: 'http://127.0.0.1:9/a',
        ENERGY_ORACLE_CHAIN_ID: '1',
        ENERGY_LOG_DIR: path.join(folder.path, 'none'),
        TELEMETRY_STATE_FILE: path.join(folder.path, 'args.json'),
      },
      ['--dry-run', 'TELEMETRY_ROLE=7'],
    );
    assert.equal(code, 0, daemon.tail());
  });

  test('.env read, environment wins', async () => {
    const cwd = path.join(folder.path, 'dotenv');
    fs.mkdirSync(cwd);
    fs.writeFileSync(
      path.join(cwd, '.env'),
      `TELEMETRY_ROLE=999\nENERGY_ORACLE_ADDRESS=${ORACLE}\n`,
    );
    const envWins = await runToExit(
      {
        TELEMETRY_ROLE: '3',
        ENERGY_ORACLE_SIGNER_KEY: KEY,
        ENERGY_ORACLE_API_URL: 'http://127.0.0.1:9/a',
        ENERGY_ORACLE_CHAIN_ID: '1',
        ENERGY_LOG_DIR: path.join(folder.path, 'none'),
        TELEMETRY_STATE_FILE: path.join(folder.path, 'dotenv.json'),
      },
      ['--dry-run'],
      cwd,
    );
    assert.equal(envWins.code, 0, envWins.daemon.tail());

    const dotenvOnly = await runToExit(
      {
        ENERGY_ORACLE_SIGNER_KEY: KEY,
        ENERGY_ORACLE_API_URL: 'http://127.0.0.1:9/a',
        ENERGY_ORACLE_CHAIN_ID: '1',
      },
      ['--dry-run'],
      cwd,
    );
    assert.equal(dotenvOnly.code, 78);
    assert.match(dotenvOnly.daemon.output, /TELEMETRY_ROLE is \\?"999\\?"/);
  });
});

describe('secrets in error paths', () => {
  const folder = temporaryFolder('secrets');
  let chain: Chain;

  before(async () => {
    chain = await startAnvil();
  });

  after(async () => {
    await chain.stop();
    folder.cleanup();
  });

  test('key source named at start', async () => {
    const keyFile = path.join(folder.path, 'key-file');
    fs.writeFileSync(keyFile, `${KEY}\n`);
    const daemon = new DaemonProcess({
      ENERGY_ORACLE_ADDRESS: ORACLE,
      ENERGY_ORACLE_SIGNER_KEY_FILE: keyFile,
      ENERGY_ORACLE_RPC_URL: 'http://127.0.0.1:9',
      ENERGY_LOG_DIR: copySamples(path.join(folder.path, 'key-file-run')),
      TELEMETRY_STATE_FILE: path.join(folder.path, 'key-file.json'),
      TELEMETRY_RETRY_DELAY_MS: '50',
    });
    await daemon.waitFor(
      (lines) => lines.filter((l) => l.msg === 'target not reachable yet; retrying').length >= 3,
      15_000,
      'three connection attempts',
    );
    await daemon.stop();
    const start = daemon.messages('operator-telemetry starting')[0];
    assert.match(String(start?.keySource), /ENERGY_ORACLE_SIGNER_KEY_FILE/);
    assert.equal(start?.signer, new Wallet(KEY).address);
    assertNoSecret(daemon.output, 'the output with an unreachable RPC');
  });

  test('keystore with password file', async () => {
    const keystore = path.join(folder.path, 'keystore.json');
    const password = path.join(folder.path, 'password');
    fs.writeFileSync(keystore, new Wallet(KEY).encryptSync('correct horse'));
    fs.writeFileSync(password, 'correct horse\n');
    const { code, daemon } = await runToExit(
      {
        ENERGY_ORACLE_ADDRESS: ORACLE,
        ENERGY_ORACLE_KEYSTORE_FILE: keystore,
        ENERGY_ORACLE_KEYSTORE_PASSWORD_FILE: password,
        ENERGY_ORACLE_API_URL: 'http://127.0.0.1:9/a',
        ENERGY_ORACLE_CHAIN_ID: '1',
        ENERGY_LOG_DIR: path.join(folder.path, 'none'),
        TELEMETRY_STATE_FILE: path.join(folder.path, 'keystore-state.json'),
      },
      ['--dry-run'],
    );
    assert.equal(code, 0, daemon.tail());

    fs.writeFileSync(password, 'wrong horse\n');
    const wrong = await runToExit({
      ENERGY_ORACLE_ADDRESS: ORACLE,
      ENERGY_ORACLE_KEYSTORE_FILE: keystore,
      ENERGY_ORACLE_KEYSTORE_PASSWORD_FILE: password,
      ENERGY_ORACLE_API_URL: 'http://127.0.0.1:9/a',
      ENERGY_ORACLE_CHAIN_ID: '1',
    });
    assert.equal(wrong.code, 78);
    assert.match(wrong.daemon.output, /cannot be decrypted/);
    assert.equal(wrong.daemon.output.includes('wrong horse'), false);
  });

  test('failing submissions leak nothing', async () => {
    const oracle = await deployOracle(chain, { signers: [] });
    const logs = copySamples(path.join(folder.path, 'contract-run'));
    const stateFile = path.join(folder.path, 'contract-state.json');
    const contractRun = new DaemonProcess({
      ENERGY_ORACLE_ADDRESS: oracle.address,
      ENERGY_ORACLE_SIGNER_KEY: KEY,
      ENERGY_ORACLE_RPC_URL: chain.rpcUrl,
      ENERGY_LOG_DIR: logs,
      TELEMETRY_STATE_FILE: stateFile,
      TELEMETRY_RETRY_DELAY_MS: '20',
      TELEMETRY_MAX_RETRIES: '2',
    });
    await contractRun.waitFor(
      (lines) => lines.some((l) => l.reason === 'signer-not-authorised'),
      20_000,
      'a rejection',
    );
    await contractRun.stop();

    const server = await startIngestServer({
      chainId: 1n,
      verifyingContract: ORACLE,
      signers: [],
      token: 'another-token',
    });
    const apiRun = new DaemonProcess({
      ENERGY_ORACLE_ADDRESS: ORACLE,
      ENERGY_ORACLE_SIGNER_KEY: KEY,
      ENERGY_ORACLE_API_URL: server.url,
      ENERGY_ORACLE_API_TOKEN: TOKEN,
      ENERGY_ORACLE_CHAIN_ID: '1',
      ENERGY_LOG_DIR: logs,
      TELEMETRY_STATE_FILE: path.join(folder.path, 'api-state.json'),
      TELEMETRY_RETRY_DELAY_MS: '20',
      TELEMETRY_MAX_RETRIES: '2',
      LOG_LEVEL: 'debug',
    });
    await apiRun.waitFor(
      (lines) => lines.some((l) => l.reason === 'unauthorised-token'),
      20_000,
      'a 401 rejection',
    );
    await apiRun.stop();
    await server.close();

    assertNoSecret(contractRun.output, 'the contract-mode output');
    assertNoSecret(apiRun.output, 'the API-mode output');
    for (const file of fs.readdirSync(folder.path)) {
      const full = path.join(folder.path, file);
      if (fs.statSync(full).isFile() && !file.startsWith('key'))
        assertNoSecret(fs.readFileSync(full, 'utf8'), file);
    }
  });

  test('help output has no secret', async () => {
    const { code, daemon } = await runToExit(
      { ENERGY_ORACLE_SIGNER_KEY: KEY, ENERGY_ORACLE_API_TOKEN: TOKEN },
      ['--help'],
    );
    assert.equal(code, 0);
    assert.match(daemon.output, /Usage: operator-telemetry/);
    assertNoSecret(daemon.output, '--help');
  });
});
