import fs from 'node:fs';
import path from 'node:path';
import dotenv from 'dotenv';
import { getAddress } from 'ethers';
import { ConfigError } from './errors';
import { Secret } from './secret';

export type Mode = 'contract' | 'api';

/** Source of the signer key. Exactly one source may be configured. */
export type SignerSource =
  | { kind: 'variable'; key: Secret }
  | { kind: 'file'; path: string; key: Secret }
  | { kind: 'keystore'; path: string; password: Secret };

export interface Config {
  mode: Mode;
  /** Root of the orchestrator's energy logs: `<logDir>/<agentDir>/<jobId>.json`. */
  logDir: string;
  oracleAddress: string;
  signer: SignerSource;
  rpcUrl: string | undefined;
  apiUrl: string | undefined;
  apiToken: Secret | undefined;
  /** EIP-712 domain chain id; required in API mode, checked against the RPC in contract mode. */
  chainId: bigint | undefined;
  pollIntervalMs: number;
  /** Attempts per revision within one cycle, the first one included. */
  maxRetries: number;
  /** Wait before the second attempt; each later wait doubles. */
  retryDelayMs: number;
  deadlineBufferSec: number;
  epochDurationSec: number;
  /** Decimal text, so that scaling stays exact (see decimal.ts). */
  energyScaling: string;
  valueScaling: string;
  role: number;
  stateFile: string;
  /** Attestations started per cycle. */
  maxBatch: number;
  /** Blocks a transaction needs on top of its own before its revision counts as done. */
  confirmations: number;
  /** Revisions of different agents in flight at once. */
  concurrency: number;
  requestTimeoutMs: number;
  /** How long to wait for a receipt before the transaction is broadcast again. */
  txTimeoutMs: number;
  maxFeePerGasWei: bigint | undefined;
  priorityFeePerGasWei: bigint | undefined;
  maxFileBytes: number;
  /** Every this many cycles, every log file is read again even if its size and time look unchanged. */
  fullScanEvery: number;
  watch: boolean;
  allowInsecureToken: boolean;
  /** Start with an empty state file even though the oracle already accepted attestations for these agents. */
  allowEmptyState: boolean;
  shard: { index: number; count: number } | undefined;
  metricsPort: number | undefined;
  metricsHost: string;
  minBalanceWei: bigint | undefined;
  logLevel: string;
}

/** Every variable the daemon reads, with its default. Secrets have no default. */
export const DEFAULTS: Readonly<Record<string, string | undefined>> = {
  TELEMETRY_MODE: undefined,
  ENERGY_LOG_DIR: 'logs/energy',
  ENERGY_ORACLE_ADDRESS: undefined,
  ENERGY_ORACLE_SIGNER_KEY: undefined,
  ENERGY_ORACLE_SIGNER_KEY_FILE: undefined,
  ENERGY_ORACLE_KEYSTORE_FILE: undefined,
  ENERGY_ORACLE_KEYSTORE_PASSWORD_FILE: undefined,
  ENERGY_ORACLE_RPC_URL: undefined,
  ENERGY_ORACLE_API_URL: undefined,
  ENERGY_ORACLE_API_TOKEN: undefined,
  ENERGY_ORACLE_CHAIN_ID: undefined,
  TELEMETRY_POLL_INTERVAL_MS: '10000',
  TELEMETRY_MAX_RETRIES: '5',
  TELEMETRY_RETRY_DELAY_MS: '2000',
  TELEMETRY_DEADLINE_BUFFER_SEC: '3600',
  TELEMETRY_EPOCH_DURATION_SEC: '86400',
  TELEMETRY_ENERGY_SCALING: '1',
  TELEMETRY_VALUE_SCALING: '1000000',
  TELEMETRY_ROLE: '2',
  TELEMETRY_STATE_FILE: 'storage/operator-telemetry-state.json',
  TELEMETRY_MAX_BATCH: '20',
  TELEMETRY_CONFIRMATIONS: '1',
  TELEMETRY_CONCURRENCY: '32',
  TELEMETRY_REQUEST_TIMEOUT_MS: '15000',
  TELEMETRY_TX_TIMEOUT_MS: '120000',
  TELEMETRY_MAX_FEE_PER_GAS_GWEI: undefined,
  TELEMETRY_PRIORITY_FEE_GWEI: undefined,
  TELEMETRY_MAX_FILE_BYTES: '1048576',
  TELEMETRY_FULL_SCAN_EVERY: '360',
  TELEMETRY_WATCH: 'true',
  TELEMETRY_ALLOW_INSECURE_TOKEN: 'false',
  TELEMETRY_ALLOW_EMPTY_STATE: 'false',
  TELEMETRY_SHARD: undefined,
  TELEMETRY_METRICS_PORT: undefined,
  TELEMETRY_METRICS_HOST: '127.0.0.1',
  TELEMETRY_MIN_BALANCE_ETH: undefined,
  LOG_LEVEL: undefined,
  DEBUG: undefined,
};

const SECRET_VARIABLES = new Set(['ENERGY_ORACLE_SIGNER_KEY', 'ENERGY_ORACLE_API_TOKEN']);
const KNOWN_PREFIXES = ['TELEMETRY_', 'ENERGY_ORACLE_'];

/** Raw text values by variable name, after merging every source. */
export type RawSettings = Record<string, string | undefined>;

export interface LoadedSettings {
  raw: RawSettings;
  /** Variables with a known prefix that the daemon does not read (likely typos). */
  unknown: string[];
}

/**
 * Merges the configuration sources. Precedence, highest first: `KEY=VALUE` command-line
 * arguments, the process environment, the `.env` file in the working directory, defaults.
 */
export function mergeSettings(
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  dotenvText: string | undefined,
): LoadedSettings {
  const fromFile = dotenvText === undefined ? {} : dotenv.parse(dotenvText);
  const fromArgs = parseAssignments(args);
  const merged: RawSettings = {};
  const unknown = new Set<string>();

  for (const source of [fromFile, env, fromArgs]) {
    for (const [name, value] of Object.entries(source)) {
      // An empty value (`TELEMETRY_ROLE=` in a compose file) counts as unset, so a lower
      // source or the default applies.
      if (value === undefined || value.trim() === '') continue;
      if (name in DEFAULTS) {
        merged[name] = value;
      } else if (KNOWN_PREFIXES.some((prefix) => name.startsWith(prefix))) {
        unknown.add(name);
      }
    }
  }

  const raw: RawSettings = {};
  for (const [name, fallback] of Object.entries(DEFAULTS)) {
    const value = merged[name];
    raw[name] = value === undefined || value.trim() === '' ? fallback : value.trim();
  }
  return { raw, unknown: [...unknown].sort() };
}

/** Picks the `KEY=VALUE` arguments (PM2 passes them after `--`). */
export function parseAssignments(args: readonly string[]): Record<string, string> {
  const result: Record<string, string> = {};
  for (const arg of args) {
    const match = /^([A-Z][A-Z0-9_]*)=(.*)$/s.exec(arg);
    if (match?.[1] !== undefined && match[2] !== undefined) result[match[1]] = match[2];
  }
  return result;
}

/** Reads `.env` from the working directory, if there is one. */
export function readDotenv(cwd: string): string | undefined {
  try {
    return fs.readFileSync(path.join(cwd, '.env'), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ConfigError([`.env in ${cwd} could not be read: ${(error as Error).message}`]);
  }
}

/**
 * Validates every variable and builds the typed configuration. All problems are collected
 * and thrown together as one ConfigError, so an operator fixes them in one go.
 */
export function parseConfig(raw: RawSettings): Config {
  const problems: string[] = [];
  const v = new Validator(raw, problems);

  const rpcUrl = v.url('ENERGY_ORACLE_RPC_URL');
  const mode = v.mode(rpcUrl);
  const apiUrl = v.url('ENERGY_ORACLE_API_URL');
  const chainId = v.bigInteger('ENERGY_ORACLE_CHAIN_ID', 1n);
  const oracleAddress = v.address('ENERGY_ORACLE_ADDRESS');
  const signer = v.signerSource();
  const defaultedNote =
    raw.TELEMETRY_MODE === undefined
      ? ' (the default when TELEMETRY_MODE and the JSON-RPC URL are not set)'
      : '';

  if (oracleAddress === undefined && raw.ENERGY_ORACLE_ADDRESS === undefined) {
    problems.push('ENERGY_ORACLE_ADDRESS is missing: set it to the EnergyOracle contract address');
  }
  if (mode === 'contract' && rpcUrl === undefined && raw.ENERGY_ORACLE_RPC_URL === undefined) {
    problems.push('ENERGY_ORACLE_RPC_URL is missing: contract mode needs a JSON-RPC endpoint');
  }
  if (mode === 'api') {
    if (apiUrl === undefined && raw.ENERGY_ORACLE_API_URL === undefined) {
      problems.push(
        `ENERGY_ORACLE_API_URL is missing: API mode${defaultedNote} needs the ingestion endpoint`,
      );
    }
    if (chainId === undefined && raw.ENERGY_ORACLE_CHAIN_ID === undefined) {
      problems.push(
        `ENERGY_ORACLE_CHAIN_ID is missing: API mode${defaultedNote} reads no chain, so the EIP-712 domain needs it`,
      );
    }
  }

  const apiToken = raw.ENERGY_ORACLE_API_TOKEN;
  // eslint-disable-next-line no-control-regex -- control characters are what is checked
  if (apiToken !== undefined && /[\u0000-\u001f\u007f]/.test(apiToken)) {
    problems.push(
      'ENERGY_ORACLE_API_TOKEN contains a line break or another control character (value hidden): expected the token alone on one line',
    );
  }
  const allowInsecureToken = v.boolean('TELEMETRY_ALLOW_INSECURE_TOKEN');
  if (mode === 'api' && apiToken !== undefined && apiUrl !== undefined && !allowInsecureToken) {
    const url = new URL(apiUrl);
    if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) {
      problems.push(
        `ENERGY_ORACLE_API_URL is ${apiUrl}: the API token would travel unencrypted; ` +
          'use https://, or set TELEMETRY_ALLOW_INSECURE_TOKEN=true to accept that',
      );
    }
  }

  const config: Config = {
    mode,
    logDir: path.resolve(raw.ENERGY_LOG_DIR ?? 'logs/energy'),
    oracleAddress: oracleAddress ?? '',
    signer: signer ?? { kind: 'variable', key: new Secret('') },
    rpcUrl,
    apiUrl,
    apiToken: apiToken === undefined ? undefined : new Secret(apiToken),
    chainId,
    pollIntervalMs: v.integer('TELEMETRY_POLL_INTERVAL_MS', 1) ?? 10000,
    maxRetries: v.integer('TELEMETRY_MAX_RETRIES', 1) ?? 5,
    retryDelayMs: v.integer('TELEMETRY_RETRY_DELAY_MS', 1) ?? 2000,
    deadlineBufferSec: v.integer('TELEMETRY_DEADLINE_BUFFER_SEC', 60) ?? 3600,
    epochDurationSec: v.integer('TELEMETRY_EPOCH_DURATION_SEC', 1) ?? 86400,
    energyScaling: v.decimal('TELEMETRY_ENERGY_SCALING') ?? '1',
    valueScaling: v.decimal('TELEMETRY_VALUE_SCALING') ?? '1000000',
    role: v.integer('TELEMETRY_ROLE', 0, 255) ?? 2,
    stateFile: path.resolve(raw.TELEMETRY_STATE_FILE ?? 'storage/operator-telemetry-state.json'),
    maxBatch: v.integer('TELEMETRY_MAX_BATCH', 1) ?? 20,
    confirmations: v.integer('TELEMETRY_CONFIRMATIONS', 1) ?? 1,
    concurrency: v.integer('TELEMETRY_CONCURRENCY', 1, 1024) ?? 32,
    requestTimeoutMs: v.integer('TELEMETRY_REQUEST_TIMEOUT_MS', 1) ?? 15000,
    txTimeoutMs: v.integer('TELEMETRY_TX_TIMEOUT_MS', 1) ?? 120000,
    maxFeePerGasWei: v.gwei('TELEMETRY_MAX_FEE_PER_GAS_GWEI'),
    priorityFeePerGasWei: v.gwei('TELEMETRY_PRIORITY_FEE_GWEI'),
    maxFileBytes: v.integer('TELEMETRY_MAX_FILE_BYTES', 1) ?? 1048576,
    fullScanEvery: v.integer('TELEMETRY_FULL_SCAN_EVERY', 1) ?? 360,
    watch: v.boolean('TELEMETRY_WATCH'),
    allowInsecureToken,
    allowEmptyState: v.boolean('TELEMETRY_ALLOW_EMPTY_STATE'),
    shard: v.shard('TELEMETRY_SHARD'),
    metricsPort: v.integer('TELEMETRY_METRICS_PORT', 1, 65535),
    metricsHost: raw.TELEMETRY_METRICS_HOST ?? '127.0.0.1',
    minBalanceWei: v.ether('TELEMETRY_MIN_BALANCE_ETH'),
    logLevel: logLevelFrom(raw),
  };

  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

/** Loads and validates the configuration from every source. */
export function loadConfig(
  args: readonly string[] = process.argv.slice(2),
  env: NodeJS.ProcessEnv = process.env,
  cwd: string = process.cwd(),
): { config: Config; unknown: string[] } {
  const { raw, unknown } = mergeSettings(args, env, readDotenv(cwd));
  return { config: parseConfig(raw), unknown };
}

function logLevelFrom(raw: RawSettings): string {
  if (raw.LOG_LEVEL !== undefined) return raw.LOG_LEVEL;
  const debug = raw.DEBUG ?? '';
  const wantsDebug = debug
    .split(/[\s,]+/)
    .some((name) => name === 'operator-telemetry' || name === '*');
  return wantsDebug ? 'debug' : 'info';
}

/** The secp256k1 curve order: a private key must be above 0 and below it. */
const SECP256K1_ORDER = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;

function isValidPrivateKey(hex: string): boolean {
  const value = BigInt(hex);
  return value > 0n && value < SECP256K1_ORDER;
}

export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.replace(/^\[|\]$/g, '');
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** Shows a value in a message, or hides it when the variable is a secret. */
function shown(name: string, value: string): string {
  return SECRET_VARIABLES.has(name) ? '(value hidden)' : JSON.stringify(value);
}

/** Parses one variable per method; each failure adds a problem and returns undefined. */
class Validator {
  constructor(
    private readonly raw: RawSettings,
    private readonly problems: string[],
  ) {}

  private fail(name: string, value: string, expected: string): undefined {
    this.problems.push(`${name} is ${shown(name, value)}: expected ${expected}`);
    return undefined;
  }

  mode(rpcUrl: string | undefined): Mode {
    const value = this.raw.TELEMETRY_MODE;
    // The rule looks at whether the RPC URL is set, not whether it is valid: an invalid URL
    // is reported as such, not turned into a list of missing API-mode variables.
    const fallback =
      this.raw.ENERGY_ORACLE_RPC_URL !== undefined || rpcUrl !== undefined ? 'contract' : 'api';
    if (value === undefined) return fallback;
    if (value === 'contract' || value === 'api') return value;
    this.fail('TELEMETRY_MODE', value, '"contract" or "api"');
    return fallback;
  }

  integer(name: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
    const value = this.raw[name];
    if (value === undefined) return undefined;
    const range = max === Number.MAX_SAFE_INTEGER ? `at least ${min}` : `from ${min} to ${max}`;
    if (!/^\d+$/.test(value)) return this.fail(name, value, `a whole number ${range}`);
    const parsed = Number(value);
    if (parsed < min || parsed > max) return this.fail(name, value, `a whole number ${range}`);
    return parsed;
  }

  bigInteger(name: string, min: bigint): bigint | undefined {
    const value = this.raw[name];
    if (value === undefined) return undefined;
    if (!/^\d+$/.test(value) || BigInt(value) < min) {
      return this.fail(name, value, `a whole number of at least ${min}`);
    }
    return BigInt(value);
  }

  decimal(name: string): string | undefined {
    const value = this.raw[name];
    if (value === undefined) return undefined;
    const text = value.replace(/_/g, '');
    if (!/^\d+(\.\d+)?([eE][+-]?\d+)?$/.test(text)) {
      return this.fail(name, value, 'a finite non-negative number such as 1 or 1000000 or 0.5');
    }
    return text;
  }

  gwei(name: string): bigint | undefined {
    return this.scaledUnits(name, 9, 'gwei');
  }

  ether(name: string): bigint | undefined {
    return this.scaledUnits(name, 18, 'ether');
  }

  private scaledUnits(name: string, decimals: number, unit: string): bigint | undefined {
    const value = this.raw[name];
    if (value === undefined) return undefined;
    const match = /^(\d+)(?:\.(\d+))?$/.exec(value);
    if (match === null || (match[2]?.length ?? 0) > decimals) {
      return this.fail(name, value, `an amount in ${unit} with at most ${decimals} decimals`);
    }
    const fraction = (match[2] ?? '').padEnd(decimals, '0');
    return BigInt(match[1] ?? '0') * 10n ** BigInt(decimals) + BigInt(fraction || '0');
  }

  boolean(name: string): boolean {
    const value = this.raw[name];
    if (value === undefined) return false;
    if (/^(true|1|yes)$/i.test(value)) return true;
    if (/^(false|0|no)$/i.test(value)) return false;
    this.fail(name, value, '"true" or "false"');
    return false;
  }

  url(name: string): string | undefined {
    const value = this.raw[name];
    if (value === undefined) return undefined;
    try {
      const url = new URL(value);
      if (url.protocol === 'http:' || url.protocol === 'https:') return value;
    } catch {
      // Reported below.
    }
    return this.fail(name, value, 'an http:// or https:// URL');
  }

  address(name: string): string | undefined {
    const value = this.raw[name];
    if (value === undefined) return undefined;
    if (!/^0x[0-9a-fA-F]{40}$/.test(value)) {
      return this.fail(name, value, 'a 20-byte hex address starting with 0x');
    }
    try {
      return getAddress(value);
    } catch {
      return this.fail(name, value, 'an address with a valid EIP-55 checksum (or all lowercase)');
    }
  }

  shard(name: string): { index: number; count: number } | undefined {
    const value = this.raw[name];
    if (value === undefined) return undefined;
    const match = /^(\d+)\/(\d+)$/.exec(value);
    const index = Number(match?.[1]);
    const count = Number(match?.[2]);
    if (match === null || count < 1 || index >= count) {
      return this.fail(name, value, '"i/n" with 0 <= i < n, for example 0/2');
    }
    return { index, count };
  }

  signerSource(): SignerSource | undefined {
    const key = this.raw.ENERGY_ORACLE_SIGNER_KEY;
    const keyFile = this.raw.ENERGY_ORACLE_SIGNER_KEY_FILE;
    const keystore = this.raw.ENERGY_ORACLE_KEYSTORE_FILE;
    const passwordFile = this.raw.ENERGY_ORACLE_KEYSTORE_PASSWORD_FILE;
    const sources = [key, keyFile, keystore].filter((source) => source !== undefined);

    if (sources.length === 0) {
      this.problems.push(
        'ENERGY_ORACLE_SIGNER_KEY is missing: set it, or ENERGY_ORACLE_SIGNER_KEY_FILE, ' +
          'or ENERGY_ORACLE_KEYSTORE_FILE with ENERGY_ORACLE_KEYSTORE_PASSWORD_FILE',
      );
      return undefined;
    }
    if (sources.length > 1) {
      this.problems.push(
        'more than one signer key source is set: keep exactly one of ENERGY_ORACLE_SIGNER_KEY, ' +
          'ENERGY_ORACLE_SIGNER_KEY_FILE and ENERGY_ORACLE_KEYSTORE_FILE',
      );
      return undefined;
    }

    if (key !== undefined)
      return this.privateKey('ENERGY_ORACLE_SIGNER_KEY', key, (k) => ({
        kind: 'variable',
        key: k,
      }));
    if (keyFile !== undefined) {
      const text = this.readFile('ENERGY_ORACLE_SIGNER_KEY_FILE', keyFile);
      if (text === undefined) return undefined;
      return this.privateKey(
        `the file named by ENERGY_ORACLE_SIGNER_KEY_FILE (${keyFile})`,
        text.trim(),
        (k) => ({
          kind: 'file',
          path: keyFile,
          key: k,
        }),
      );
    }
    if (passwordFile === undefined) {
      this.problems.push(
        'ENERGY_ORACLE_KEYSTORE_PASSWORD_FILE is missing: a keystore needs the file with its password',
      );
      return undefined;
    }
    const password = this.readFile('ENERGY_ORACLE_KEYSTORE_PASSWORD_FILE', passwordFile);
    if (
      password === undefined ||
      this.readFile('ENERGY_ORACLE_KEYSTORE_FILE', keystore!) === undefined
    ) {
      return undefined;
    }
    return {
      kind: 'keystore',
      path: keystore!,
      password: new Secret(password.replace(/\r?\n$/, '')),
    };
  }

  private privateKey(
    where: string,
    value: string,
    build: (key: Secret) => SignerSource,
  ): SignerSource | undefined {
    const hex = value.startsWith('0x') ? value : `0x${value}`;
    if (!/^0x[0-9a-fA-F]{64}$/.test(hex) || !isValidPrivateKey(hex)) {
      this.problems.push(
        `${where} is not a private key (value hidden): expected 32 bytes as 64 hex digits, a number above 0 and below the secp256k1 curve order`,
      );
      return undefined;
    }
    return build(new Secret(hex));
  }

  private readFile(name: string, file: string): string | undefined {
    try {
      return fs.readFileSync(file, 'utf8');
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? 'error';
      // A key pasted where a path belongs must not be echoed back.
      const looksLikeKey = /[0-9a-fA-F]{32}/.test(file);
      const shownPath = looksLikeKey
        ? '(value hidden: it looks like a key, not a path)'
        : JSON.stringify(file);
      this.problems.push(`${name} is ${shownPath}: the file could not be read (${code})`);
      return undefined;
    }
  }
}
