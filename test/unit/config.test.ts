import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { inspect } from 'node:util';
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Config, RawSettings } from '../../apps/operator/config';
import {
  DEFAULTS,
  isLoopbackHost,
  loadConfig,
  mergeSettings,
  parseAssignments,
  parseConfig,
} from '../../apps/operator/config';
import { ConfigError } from '../../apps/operator/errors';

// Recognisable values, so that a leak into a message is easy to spot.
const SIGNER_KEY = `0x${'5ec7e7'.repeat(10)}5ec7`;
const API_TOKEN = 'tok-SECRET-4242-do-not-print';
const ORACLE = '0x5FbDB2315678afecb367f032d93F642f64180aa3';

const temporary = fs.mkdtempSync(path.join(os.tmpdir(), 'config-test-'));
after(() => fs.rmSync(temporary, { recursive: true, force: true }));

/** Settings of a valid API-mode configuration, defaults filled in. */
function apiSettings(overrides: Record<string, string | undefined> = {}): RawSettings {
  return settings({
    ENERGY_ORACLE_ADDRESS: ORACLE,
    ENERGY_ORACLE_SIGNER_KEY: SIGNER_KEY,
    ENERGY_ORACLE_API_URL: 'https://ingest.example.invalid/attestations',
    ENERGY_ORACLE_API_TOKEN: API_TOKEN,
    ENERGY_ORACLE_CHAIN_ID: '31337',
    ...overrides,
  });
}

/** Settings of a valid contract-mode configuration, defaults filled in. */
function contractSettings(overrides: Record<string, string | undefined> = {}): RawSettings {
  return settings({
    ENERGY_ORACLE_ADDRESS: ORACLE,
    ENERGY_ORACLE_SIGNER_KEY: SIGNER_KEY,
    ENERGY_ORACLE_RPC_URL: 'http://127.0.0.1:8545',
    ...overrides,
  });
}

/** Merges the given variables over the defaults, as mergeSettings does; undefined unsets. */
function settings(variables: Record<string, string | undefined>): RawSettings {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(variables)) if (value !== undefined) env[name] = value;
  const raw = mergeSettings([], env, undefined).raw;
  for (const [name, value] of Object.entries(variables)) if (value === undefined) delete raw[name];
  return raw;
}

/** Returns the problems parseConfig reports; fails when it accepts the settings. */
function problemsOf(raw: RawSettings): string[] {
  try {
    parseConfig(raw);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
    return error.problems;
  }
  assert.fail('parseConfig accepted the settings');
}

function assertProblem(problems: string[], pattern: RegExp): void {
  assert.ok(
    problems.some((problem) => pattern.test(problem)),
    `no problem matches ${pattern}; problems: ${JSON.stringify(problems)}`,
  );
}

function assertNoProblem(problems: string[], pattern: RegExp): void {
  const matching = problems.filter((problem) => pattern.test(problem));
  assert.deepEqual(matching, [], `unexpected problem matching ${pattern}`);
}

describe('mergeSettings', () => {
  test('defaults fill every variable', () => {
    const { raw } = mergeSettings([], {}, undefined);
    assert.equal(raw.TELEMETRY_ROLE, '2');
    assert.equal(raw.TELEMETRY_VALUE_SCALING, '1000000');
    assert.equal(raw.ENERGY_ORACLE_SIGNER_KEY, undefined);
    assert.deepEqual(Object.keys(raw).sort(), Object.keys(DEFAULTS).sort());
  });

  test('.env overrides defaults', () => {
    const { raw } = mergeSettings([], {}, 'TELEMETRY_ROLE=3\n');
    assert.equal(raw.TELEMETRY_ROLE, '3');
  });

  test('environment overrides .env', () => {
    const { raw } = mergeSettings([], { TELEMETRY_ROLE: '4' }, 'TELEMETRY_ROLE=3\n');
    assert.equal(raw.TELEMETRY_ROLE, '4');
  });

  test('arguments override environment', () => {
    const { raw } = mergeSettings(
      ['TELEMETRY_ROLE=5'],
      { TELEMETRY_ROLE: '4' },
      'TELEMETRY_ROLE=3\n',
    );
    assert.equal(raw.TELEMETRY_ROLE, '5');
  });

  test('lower sources fill other variables', () => {
    const { raw } = mergeSettings(
      ['TELEMETRY_ROLE=5'],
      { TELEMETRY_MAX_BATCH: '7' },
      'TELEMETRY_CONCURRENCY=3\n',
    );
    assert.equal(raw.TELEMETRY_ROLE, '5');
    assert.equal(raw.TELEMETRY_MAX_BATCH, '7');
    assert.equal(raw.TELEMETRY_CONCURRENCY, '3');
  });

  test('values are trimmed', () => {
    const { raw } = mergeSettings([], { TELEMETRY_ROLE: '  6 ' }, undefined);
    assert.equal(raw.TELEMETRY_ROLE, '6');
  });

  test('blank value means default', () => {
    const { raw } = mergeSettings([], { TELEMETRY_ROLE: '   ' }, undefined);
    assert.equal(raw.TELEMETRY_ROLE, '2');
  });

  test('unknown TELEMETRY names reported', () => {
    const { unknown } = mergeSettings(
      ['TELEMETRY_POLL_INTERVAL=5'],
      { TELEMETRY_MAX_RETRY: '3', ENERGY_ORACLE_KEY: 'x', PATH: '/usr/bin', HOME: '/root' },
      'TELEMETRY_ROLLE=2\n',
    );
    assert.deepEqual(unknown, [
      'ENERGY_ORACLE_KEY',
      'TELEMETRY_MAX_RETRY',
      'TELEMETRY_POLL_INTERVAL',
      'TELEMETRY_ROLLE',
    ]);
  });

  test('known names not reported', () => {
    const { unknown } = mergeSettings(['TELEMETRY_ROLE=1'], { ENERGY_LOG_DIR: '/logs' }, undefined);
    assert.deepEqual(unknown, []);
  });

  test('parseAssignments keeps KEY=VALUE only', () => {
    const parsed = parseAssignments([
      '--',
      'start',
      'TELEMETRY_ROLE=1',
      'lower=2',
      'URL=a=b',
      'EMPTY=',
    ]);
    assert.deepEqual(parsed, { TELEMETRY_ROLE: '1', URL: 'a=b', EMPTY: '' });
  });

  test('loadConfig reads .env in folder', () => {
    const folder = fs.mkdtempSync(path.join(temporary, 'dotenv-'));
    const dotenv = [
      `ENERGY_ORACLE_ADDRESS=${ORACLE}`,
      `ENERGY_ORACLE_SIGNER_KEY=${SIGNER_KEY}`,
      'ENERGY_ORACLE_API_URL=http://127.0.0.1:9/ingest',
      'ENERGY_ORACLE_CHAIN_ID=5',
      'TELEMETRY_ROLE=9',
      'TELEMETRY_TYPO=1',
    ].join('\n');
    fs.writeFileSync(path.join(folder, '.env'), dotenv);

    const { config, unknown } = loadConfig(['TELEMETRY_ROLE=8'], {}, folder);
    assert.equal(config.role, 8);
    assert.equal(config.chainId, 5n);
    assert.deepEqual(unknown, ['TELEMETRY_TYPO']);
  });
});

describe('parseConfig', () => {
  test('valid API config parses', () => {
    const config = parseConfig(apiSettings());
    assert.equal(config.mode, 'api');
    assert.equal(config.oracleAddress, ORACLE);
    assert.equal(config.chainId, 31337n);
    assert.equal(config.apiToken?.reveal(), API_TOKEN);
    assert.equal(config.signer.kind, 'variable');
    assert.equal(config.role, 2);
    assert.equal(config.energyScaling, '1');
    assert.equal(config.valueScaling, '1000000');
    assert.equal(config.epochDurationSec, 86400);
    assert.equal(config.pollIntervalMs, 10000);
  });

  test('valid contract config parses', () => {
    const config = parseConfig(contractSettings());
    assert.equal(config.mode, 'contract');
    assert.equal(config.rpcUrl, 'http://127.0.0.1:8545');
    assert.equal(config.chainId, undefined);
  });

  test('every problem in one error', () => {
    const problems = problemsOf(
      apiSettings({
        TELEMETRY_ROLE: '256',
        TELEMETRY_POLL_INTERVAL_MS: '1.5',
        ENERGY_ORACLE_API_URL: 'not a url',
        TELEMETRY_MODE: 'both',
        ENERGY_ORACLE_ADDRESS: '0x5fbDB2315678afecb367f032d93F642f64180aa3',
        ENERGY_ORACLE_CHAIN_ID: '0',
        TELEMETRY_SHARD: '2/2',
        ENERGY_ORACLE_SIGNER_KEY: `0x${'ab'.repeat(31)}`,
      }),
    );
    assert.equal(problems.length, 8);
    assertProblem(problems, /^TELEMETRY_ROLE /);
    assertProblem(problems, /^TELEMETRY_POLL_INTERVAL_MS /);
    assertProblem(problems, /^ENERGY_ORACLE_API_URL /);
    assertProblem(problems, /^TELEMETRY_MODE /);
    assertProblem(problems, /^ENERGY_ORACLE_ADDRESS /);
    assertProblem(problems, /^ENERGY_ORACLE_CHAIN_ID /);
    assertProblem(problems, /^TELEMETRY_SHARD /);
    assertProblem(problems, /^ENERGY_ORACLE_SIGNER_KEY is not a private key/);
  });

  test('key sources with other problems', () => {
    const problems = problemsOf(
      apiSettings({ ENERGY_ORACLE_SIGNER_KEY_FILE: '/run/secrets/signer', TELEMETRY_ROLE: '256' }),
    );
    assert.equal(problems.length, 2);
    assertProblem(problems, /more than one signer key source/);
    assertProblem(problems, /^TELEMETRY_ROLE /);
  });

  test('error message lists every problem', () => {
    try {
      parseConfig(apiSettings({ TELEMETRY_ROLE: 'x', TELEMETRY_MAX_BATCH: 'y' }));
      assert.fail('accepted');
    } catch (error) {
      assert.ok(error instanceof ConfigError);
      assert.match(error.message, /TELEMETRY_ROLE/);
      assert.match(error.message, /TELEMETRY_MAX_BATCH/);
    }
  });

  const roles: Array<[string, number | undefined]> = [
    ['0', 0],
    ['255', 255],
    ['256', undefined],
    ['-1', undefined],
    ['1.5', undefined],
    ['two', undefined],
    ['1e2', undefined],
  ];
  for (const [value, expected] of roles) {
    test(`role ${value} ${expected === undefined ? 'rejected' : 'accepted'}`, () => {
      if (expected !== undefined) {
        assert.equal(parseConfig(apiSettings({ TELEMETRY_ROLE: value })).role, expected);
        return;
      }
      assertProblem(
        problemsOf(apiSettings({ TELEMETRY_ROLE: value })),
        /^TELEMETRY_ROLE .*from 0 to 255/,
      );
    });
  }

  const integers: Array<[string, string]> = [
    ['TELEMETRY_POLL_INTERVAL_MS', '10s'],
    ['TELEMETRY_POLL_INTERVAL_MS', '0'],
    ['TELEMETRY_MAX_RETRIES', '2.0'],
    ['TELEMETRY_EPOCH_DURATION_SEC', '-86400'],
    ['TELEMETRY_DEADLINE_BUFFER_SEC', '59'],
    ['TELEMETRY_CONCURRENCY', '1025'],
    ['TELEMETRY_METRICS_PORT', '65536'],
    ['TELEMETRY_MAX_BATCH', '99999999999999999999'],
  ];
  for (const [name, value] of integers) {
    test(`${name}=${value} rejected`, () => {
      assertProblem(
        problemsOf(apiSettings({ [name]: value })),
        new RegExp(`^${name} is "${value}"`),
      );
    });
  }

  test('scaling must be decimal', () => {
    const problems = problemsOf(
      apiSettings({ TELEMETRY_VALUE_SCALING: '-1', TELEMETRY_ENERGY_SCALING: 'NaN' }),
    );
    assertProblem(problems, /^TELEMETRY_VALUE_SCALING /);
    assertProblem(problems, /^TELEMETRY_ENERGY_SCALING /);
  });

  test('scaling allows underscores', () => {
    assert.equal(
      parseConfig(apiSettings({ TELEMETRY_VALUE_SCALING: '1_000_000' })).valueScaling,
      '1000000',
    );
  });

  const urls = ['not a url', 'ftp://example.invalid/x', 'ws://127.0.0.1:8545', '127.0.0.1:8545'];
  for (const url of urls) {
    test(`URL ${url} rejected`, () => {
      assertProblem(
        problemsOf(apiSettings({ ENERGY_ORACLE_API_URL: url })),
        /^ENERGY_ORACLE_API_URL .*http/,
      );
    });
  }

  test('address wrong checksum rejected', () => {
    const problems = problemsOf(
      apiSettings({ ENERGY_ORACLE_ADDRESS: '0x5fbDB2315678afecb367f032d93F642f64180aa3' }),
    );
    assertProblem(problems, /^ENERGY_ORACLE_ADDRESS .*EIP-55 checksum/);
  });

  test('address lowercase accepted', () => {
    const config = parseConfig(apiSettings({ ENERGY_ORACLE_ADDRESS: ORACLE.toLowerCase() }));
    assert.equal(config.oracleAddress, ORACLE);
  });

  test('address too short rejected', () => {
    const problems = problemsOf(apiSettings({ ENERGY_ORACLE_ADDRESS: ORACLE.slice(0, 40) }));
    assertProblem(problems, /^ENERGY_ORACLE_ADDRESS .*20-byte/);
  });

  const badKeys: Array<[string, string]> = [
    ['31 bytes', `0x${'ab'.repeat(31)}`],
    ['33 bytes', `0x${'ab'.repeat(33)}`],
    ['not hex', `0x${'zz'.repeat(32)}`],
  ];
  for (const [name, key] of badKeys) {
    test(`private key of ${name} rejected`, () => {
      const problems = problemsOf(apiSettings({ ENERGY_ORACLE_SIGNER_KEY: key }));
      assertProblem(problems, /^ENERGY_ORACLE_SIGNER_KEY is not a private key .*32 bytes/);
    });
  }

  test('private key without 0x accepted', () => {
    const config = parseConfig(apiSettings({ ENERGY_ORACLE_SIGNER_KEY: SIGNER_KEY.slice(2) }));
    assert.ok(config.signer.kind === 'variable');
    assert.equal(config.signer.key.reveal(), SIGNER_KEY);
  });

  test('two key sources rejected', () => {
    const keyFile = path.join(temporary, 'two-sources.key');
    fs.writeFileSync(keyFile, SIGNER_KEY);
    const problems = problemsOf(apiSettings({ ENERGY_ORACLE_SIGNER_KEY_FILE: keyFile }));
    assertProblem(problems, /more than one signer key source/);
  });

  test('key file read and trimmed', () => {
    const keyFile = path.join(temporary, 'signer.key');
    fs.writeFileSync(keyFile, `${SIGNER_KEY}\n`);
    const config = parseConfig(
      apiSettings({ ENERGY_ORACLE_SIGNER_KEY: undefined, ENERGY_ORACLE_SIGNER_KEY_FILE: keyFile }),
    );
    assert.ok(config.signer.kind === 'file');
    assert.equal(config.signer.key.reveal(), SIGNER_KEY);
  });

  test('missing key file reported', () => {
    const problems = problemsOf(
      apiSettings({
        ENERGY_ORACLE_SIGNER_KEY: undefined,
        ENERGY_ORACLE_SIGNER_KEY_FILE: path.join(temporary, 'absent.key'),
      }),
    );
    assertProblem(problems, /^ENERGY_ORACLE_SIGNER_KEY_FILE .*could not be read \(ENOENT\)/);
  });

  test('keystore needs password file', () => {
    const keystore = path.join(temporary, 'keystore.json');
    fs.writeFileSync(keystore, '{}');
    const problems = problemsOf(
      apiSettings({ ENERGY_ORACLE_SIGNER_KEY: undefined, ENERGY_ORACLE_KEYSTORE_FILE: keystore }),
    );
    assertProblem(problems, /^ENERGY_ORACLE_KEYSTORE_PASSWORD_FILE is missing/);
  });

  test('keystore password newline stripped', () => {
    const keystore = path.join(temporary, 'keystore-ok.json');
    const passwordFile = path.join(temporary, 'keystore.password');
    fs.writeFileSync(keystore, '{}');
    fs.writeFileSync(passwordFile, 'correct horse\n');
    const config = parseConfig(
      apiSettings({
        ENERGY_ORACLE_SIGNER_KEY: undefined,
        ENERGY_ORACLE_KEYSTORE_FILE: keystore,
        ENERGY_ORACLE_KEYSTORE_PASSWORD_FILE: passwordFile,
      }),
    );
    assert.ok(config.signer.kind === 'keystore');
    assert.equal(config.signer.password.reveal(), 'correct horse');
  });
});

describe('mode rule', () => {
  test('TELEMETRY_MODE wins over RPC URL', () => {
    const config = parseConfig(
      apiSettings({ TELEMETRY_MODE: 'api', ENERGY_ORACLE_RPC_URL: 'http://127.0.0.1:8545' }),
    );
    assert.equal(config.mode, 'api');
  });

  test('RPC URL selects contract mode', () => {
    assert.equal(parseConfig(contractSettings({ TELEMETRY_MODE: undefined })).mode, 'contract');
  });

  test('no RPC URL selects API mode', () => {
    assert.equal(parseConfig(apiSettings({ TELEMETRY_MODE: undefined })).mode, 'api');
  });

  test('TELEMETRY_MODE contract explicit', () => {
    assert.equal(parseConfig(contractSettings({ TELEMETRY_MODE: 'contract' })).mode, 'contract');
  });

  test('unknown mode rejected', () => {
    assertProblem(problemsOf(apiSettings({ TELEMETRY_MODE: 'API' })), /^TELEMETRY_MODE is "API"/);
  });

  test('API mode names missing variables', () => {
    const problems = problemsOf(settings({}));
    assertProblem(problems, /^ENERGY_ORACLE_ADDRESS is missing/);
    assertProblem(problems, /^ENERGY_ORACLE_SIGNER_KEY is missing/);
    assertProblem(problems, /^ENERGY_ORACLE_API_URL is missing/);
    assertProblem(problems, /^ENERGY_ORACLE_CHAIN_ID is missing/);
    assertNoProblem(problems, /ENERGY_ORACLE_RPC_URL/);
    assert.equal(problems.length, 4);
  });

  test('contract mode names missing variables', () => {
    const problems = problemsOf(settings({ TELEMETRY_MODE: 'contract' }));
    assertProblem(problems, /^ENERGY_ORACLE_ADDRESS is missing/);
    assertProblem(problems, /^ENERGY_ORACLE_SIGNER_KEY is missing/);
    assertProblem(problems, /^ENERGY_ORACLE_RPC_URL is missing/);
    assertNoProblem(problems, /ENERGY_ORACLE_API_URL|ENERGY_ORACLE_CHAIN_ID/);
    assert.equal(problems.length, 3);
  });

  test('invalid RPC URL keeps contract mode', () => {
    const problems = problemsOf(contractSettings({ ENERGY_ORACLE_RPC_URL: 'localhost:8545' }));
    assertProblem(problems, /^ENERGY_ORACLE_RPC_URL is "localhost:8545"/);
    assertNoProblem(problems, /API mode/);
  });
});

describe('API token transport', () => {
  test('plain http to remote host rejected', () => {
    const problems = problemsOf(
      apiSettings({ ENERGY_ORACLE_API_URL: 'http://ingest.example.invalid/a' }),
    );
    assertProblem(problems, /^ENERGY_ORACLE_API_URL .*unencrypted/);
  });

  const loopback = [
    'http://127.0.0.1:8080/a',
    'http://127.1.2.3/a',
    'http://localhost:8080/a',
    'http://[::1]:8080/a',
  ];
  for (const url of loopback) {
    test(`plain http to ${new URL(url).hostname} allowed`, () => {
      assert.equal(parseConfig(apiSettings({ ENERGY_ORACLE_API_URL: url })).apiUrl, url);
    });
  }

  test('https to remote host allowed', () => {
    const config = parseConfig(
      apiSettings({ ENERGY_ORACLE_API_URL: 'https://ingest.example.invalid/a' }),
    );
    assert.equal(config.apiUrl, 'https://ingest.example.invalid/a');
  });

  test('plain http without token allowed', () => {
    const config = parseConfig(
      apiSettings({
        ENERGY_ORACLE_API_URL: 'http://ingest.example.invalid/a',
        ENERGY_ORACLE_API_TOKEN: undefined,
      }),
    );
    assert.equal(config.apiToken, undefined);
  });

  test('insecure token allowed explicitly', () => {
    const config = parseConfig(
      apiSettings({
        ENERGY_ORACLE_API_URL: 'http://ingest.example.invalid/a',
        TELEMETRY_ALLOW_INSECURE_TOKEN: 'true',
      }),
    );
    assert.equal(config.allowInsecureToken, true);
  });

  const hosts: Array<[string, boolean]> = [
    ['localhost', true],
    ['127.0.0.1', true],
    ['127.255.0.9', true],
    ['[::1]', true],
    ['::1', true],
    ['128.0.0.1', false],
    ['localhost.example.invalid', false],
    ['0.0.0.0', false],
  ];
  for (const [host, expected] of hosts) {
    test(`isLoopbackHost ${host} is ${expected}`, () => {
      assert.equal(isLoopbackHost(host), expected);
    });
  }
});

describe('secrets in config errors', () => {
  const secrets = [SIGNER_KEY, SIGNER_KEY.slice(2), API_TOKEN];

  function assertNoSecret(text: string): void {
    for (const secret of secrets)
      assert.ok(!text.includes(secret), `secret ${secret.slice(0, 8)}... leaked`);
  }

  const failing: Array<[string, RawSettings]> = [
    ['bad role', apiSettings({ TELEMETRY_ROLE: '999' })],
    ['plain http', apiSettings({ ENERGY_ORACLE_API_URL: 'http://ingest.example.invalid/a' })],
    ['two key sources', apiSettings({ ENERGY_ORACLE_KEYSTORE_FILE: '/nonexistent/keystore.json' })],
    ['key with prefix text', apiSettings({ ENERGY_ORACLE_SIGNER_KEY: `key=${SIGNER_KEY}` })],
    ['key too long', apiSettings({ ENERGY_ORACLE_SIGNER_KEY: `${SIGNER_KEY}00` })],
    [
      'key without hex prefix too short',
      apiSettings({ ENERGY_ORACLE_SIGNER_KEY: SIGNER_KEY.slice(4) }),
    ],
    [
      'negative role',
      apiSettings({
        ENERGY_ORACLE_API_URL: 'https://ingest.example.invalid/a',
        TELEMETRY_ROLE: '-1',
      }),
    ],
    [
      'missing everything else',
      settings({ ENERGY_ORACLE_SIGNER_KEY: SIGNER_KEY, ENERGY_ORACLE_API_TOKEN: API_TOKEN }),
    ],
  ];
  for (const [name, raw] of failing) {
    test(`no secret in error for ${name}`, () => {
      try {
        parseConfig(raw);
        assert.fail('accepted');
      } catch (error) {
        assert.ok(error instanceof ConfigError);
        assertNoSecret(error.message);
        assertNoSecret(error.problems.join('\n'));
        assertNoSecret(inspect(error));
      }
    });
  }

  test('no secret when printing config', () => {
    const config: Config = parseConfig(apiSettings());
    assertNoSecret(
      JSON.stringify(config, (_key, value: unknown) =>
        typeof value === 'bigint' ? String(value) : value,
      ),
    );
    assertNoSecret(inspect(config, { depth: 5 }));
    assertNoSecret(String(config.apiToken));
  });

  test('key pasted into key file hidden', () => {
    const problems = problemsOf(
      apiSettings({
        ENERGY_ORACLE_SIGNER_KEY: undefined,
        ENERGY_ORACLE_SIGNER_KEY_FILE: SIGNER_KEY,
      }),
    );
    assertNoSecret(problems.join('\n'));
  });
});

describe('empty values', () => {
  test('empty environment value falls through', () => {
    const { raw } = mergeSettings([], { TELEMETRY_ROLE: '' }, 'TELEMETRY_ROLE=7\n');
    assert.equal(raw.TELEMETRY_ROLE, '7');
  });

  test('empty value everywhere gives default', () => {
    const { raw } = mergeSettings(['TELEMETRY_ROLE='], { TELEMETRY_ROLE: ' ' }, undefined);
    assert.equal(raw.TELEMETRY_ROLE, '2');
  });
});

describe('private key range', () => {
  test('zero and curve order rejected', () => {
    for (const key of [
      `0x${'0'.repeat(64)}`,
      '0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141',
    ]) {
      const raw = mergeSettings(
        [],
        {
          ENERGY_ORACLE_SIGNER_KEY: key,
          ENERGY_ORACLE_ADDRESS: '0x5FbDB2315678afecb367f032d93F642f64180aa3',
          ENERGY_ORACLE_API_URL: 'http://127.0.0.1:9/a',
          ENERGY_ORACLE_CHAIN_ID: '1',
        },
        undefined,
      ).raw;
      assert.throws(() => parseConfig(raw), /secp256k1 curve order/);
    }
  });
});
