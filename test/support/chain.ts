import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Contract, ContractFactory, JsonRpcProvider, Network, NonceManager, Wallet } from 'ethers';
import { toQuantity } from 'ethers';
import type { EventLog, InterfaceAbi, Log } from 'ethers';

/**
 * Test chain harness: a local anvil node on 127.0.0.1 and the project's own EnergyOracle
 * contract, compiled with solc-js and deployed on it.
 */

const REPO_ROOT = path.resolve(__dirname, '../..');
const NODE_MODULES = path.join(REPO_ROOT, 'node_modules');
const ORACLE_SOURCE_FILE = path.join(REPO_ROOT, 'test/contracts/EnergyOracle.sol');
const ORACLE_SOURCE_NAME = 'EnergyOracle.sol';
const ORACLE_CONTRACT_NAME = 'EnergyOracle';
const COMPILE_CACHE_DIR = path.join(NODE_MODULES, '.cache/operator-telemetry');

// Cancun is solc 0.8.28's default EVM version. Anvil 1.7.1 runs a later hardfork by default
// (anvil_nodeInfo reports Bpo1), which executes Cancun bytecode unchanged.
const SOLC_SETTINGS = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: 'cancun',
  outputSelection: {
    [ORACLE_SOURCE_NAME]: { [ORACLE_CONTRACT_NAME]: ['abi', 'evm.bytecode.object'] },
  },
};

const ANVIL_HOST = '127.0.0.1';
const ANVIL_READY_TIMEOUT_MS = 20_000;
const ANVIL_READY_POLL_MS = 100;
const ANVIL_REQUEST_TIMEOUT_MS = 1_000;
const ANVIL_STOP_GRACE_MS = 3_000;
const STDERR_TAIL_CHARS = 8_000;
const STDOUT_TAIL_CHARS = 200;
const TERMINATING_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
const PROVIDER_POLLING_INTERVAL_MS = 100;

const DEFAULT_ANVIL_KEYS = [
  '0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80',
  '0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d',
  '0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a',
  '0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6',
  '0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a',
  '0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba',
  '0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e',
  '0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356',
  '0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97',
  '0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6',
] as const;

/**
 * Private keys of anvil's ten default accounts, derived from the public development mnemonic
 * "test test test test test test test test test test test junk". Never use them off a test chain.
 */
export const ANVIL_KEYS: readonly string[] = DEFAULT_ANVIL_KEYS;

export interface CompiledContract {
  abi: InterfaceAbi;
  /** Creation bytecode, 0x-prefixed. */
  bytecode: string;
}

export interface StartAnvilOptions {
  /** Port on 127.0.0.1. Default: a free port chosen by the OS. */
  port?: number;
  /** Seconds between blocks (interval mining). Default: none, each transaction is mined at once. */
  blockTime?: number;
  /**
   * State file passed as `--state`, which anvil loads at start when the file exists and writes
   * when it exits after SIGTERM. Default: none, so the chain is discarded on stop.
   */
  stateFile?: string;
  /** Disables automatic and interval mining, so only `mine` makes blocks. Default false. */
  noMining?: boolean;
  /** Chain id. Default: anvil's 31337. */
  chainId?: number;
}

export interface Chain {
  /** `http://127.0.0.1:<port>`. */
  rpcUrl: string;
  port: number;
  chainId: bigint;
  provider: JsonRpcProvider;
  process: ChildProcess;
  /**
   * Stops anvil (SIGTERM, then SIGKILL after 3 s) and resolves once it has exited. After a
   * SIGKILL anvil has not written its state file.
   */
  stop(): Promise<void>;
}

export interface DeployOracleOptions {
  /** Signer addresses to authorise with `setSigner`. Default: none. */
  signers?: string[];
  /** Private key of the owner that deploys and governs the oracle. Default: `ANVIL_KEYS[0]`. */
  governanceKey?: string;
}

export interface DeployedOracle {
  address: string;
  /**
   * The oracle connected to `governance`. Each send reads the pending nonce from anvil, which
   * is current because the chain's provider caches no requests. A NonceManager would count a
   * nonce even for a send that fails in gas estimation, so later transactions would wait
   * behind that gap forever.
   */
  contract: Contract;
  governance: Wallet;
}

/** The EnergyAttestation struct as the ABI decoder returns it. */
export interface DecodedAttestation {
  jobId: bigint;
  user: string;
  energy: bigint;
  degeneracy: bigint;
  epochId: bigint;
  role: bigint;
  nonce: bigint;
  deadline: bigint;
  uPre: bigint;
  uPost: bigint;
  value: bigint;
}

/** One `AttestationAccepted` event. Addresses are checksummed. */
export interface Acceptance {
  user: string;
  jobId: bigint;
  nonce: bigint;
  att: DecodedAttestation;
  signer: string;
  txHash: string;
  blockNumber: number;
}

interface SolcError {
  severity: 'error' | 'warning' | 'info';
  formattedMessage: string;
}

interface SolcOutput {
  errors?: SolcError[];
  contracts?: Record<
    string,
    Record<string, { abi: InterfaceAbi; evm: { bytecode: { object: string } } }>
  >;
}

type SolcImportResult = { contents: string } | { error: string };

interface SolcCompiler {
  version(): string;
  compile(input: string, callbacks: { import: (importPath: string) => SolcImportResult }): string;
}

const runningAnvils = new Set<ChildProcess>();
let exitHooksInstalled = false;

/**
 * Compiles test/contracts/EnergyOracle.sol, or reads the result from the cache in
 * node_modules/.cache/operator-telemetry. Throws with the compiler's messages on an error.
 */
export function compileOracle(): CompiledContract {
  const source = fs.readFileSync(ORACLE_SOURCE_FILE, 'utf8');
  const cacheFile = path.join(COMPILE_CACHE_DIR, `energy-oracle-${compileCacheKey(source)}.json`);

  const cached = readCompileCache(cacheFile);
  if (cached !== undefined) return cached;

  const compiled = compileSource(source);
  writeCompileCache(cacheFile, compiled);
  return compiled;
}

/**
 * Hashes everything that changes the compiler output: the source, the solc version, the
 * OpenZeppelin version that the imports resolve to, and the settings.
 */
function compileCacheKey(source: string): string {
  return createHash('sha256')
    .update(source)
    .update(packageVersion('solc'))
    .update(packageVersion('@openzeppelin/contracts'))
    .update(JSON.stringify(SOLC_SETTINGS))
    .digest('hex');
}

function packageVersion(name: string): string {
  const manifest = JSON.parse(
    fs.readFileSync(path.join(NODE_MODULES, name, 'package.json'), 'utf8'),
  ) as { version: string };
  return manifest.version;
}

/** Returns the cached compilation, or undefined when the file is missing or unreadable. */
function readCompileCache(cacheFile: string): CompiledContract | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(fs.readFileSync(cacheFile, 'utf8'));
  } catch {
    return undefined;
  }

  const candidate = parsed as Partial<CompiledContract>;
  if (!Array.isArray(candidate.abi)) return undefined;
  if (typeof candidate.bytecode !== 'string' || !candidate.bytecode.startsWith('0x')) {
    return undefined;
  }
  return { abi: candidate.abi, bytecode: candidate.bytecode };
}

/**
 * Writes through a temporary file and a rename, so that test files running in parallel never
 * read half a file.
 */
function writeCompileCache(cacheFile: string, compiled: CompiledContract): void {
  fs.mkdirSync(path.dirname(cacheFile), { recursive: true });
  const temporaryFile = `${cacheFile}.${process.pid}.tmp`;
  fs.writeFileSync(temporaryFile, JSON.stringify(compiled));
  fs.renameSync(temporaryFile, cacheFile);
}

function compileSource(source: string): CompiledContract {
  // Loaded only on a cache miss, because solc-js loads a large WebAssembly build (soljson.js).
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- solc-js ships no type declarations
  const solc = require('solc') as SolcCompiler;
  const input = {
    language: 'Solidity',
    sources: { [ORACLE_SOURCE_NAME]: { content: source } },
    settings: SOLC_SETTINGS,
  };
  const output = JSON.parse(
    solc.compile(JSON.stringify(input), { import: resolveImport }),
  ) as SolcOutput;

  const errors = (output.errors ?? []).filter((error) => error.severity === 'error');
  if (errors.length > 0) {
    const messages = errors.map((error) => error.formattedMessage).join('\n');
    throw new Error(`solc ${solc.version()} failed to compile ${ORACLE_SOURCE_FILE}:\n${messages}`);
  }

  const contract = output.contracts?.[ORACLE_SOURCE_NAME]?.[ORACLE_CONTRACT_NAME];
  if (contract === undefined) {
    throw new Error(
      `solc output contains no ${ORACLE_CONTRACT_NAME} contract in ${ORACLE_SOURCE_NAME}`,
    );
  }
  return { abi: contract.abi, bytecode: `0x${contract.evm.bytecode.object}` };
}

/** Resolves `@openzeppelin/...` imports from node_modules. Other imports are not found. */
function resolveImport(importPath: string): SolcImportResult {
  const openZeppelinRoot = path.join(NODE_MODULES, '@openzeppelin');
  const file = path.resolve(NODE_MODULES, importPath);
  if (!importPath.startsWith('@openzeppelin/') || !file.startsWith(openZeppelinRoot + path.sep)) {
    return { error: `import ${importPath} not found: only @openzeppelin/ imports resolve` };
  }

  try {
    return { contents: fs.readFileSync(file, 'utf8') };
  } catch (error) {
    return { error: `cannot read import ${importPath} from ${file}: ${String(error)}` };
  }
}

/**
 * Starts anvil on 127.0.0.1 and resolves once it listens on the port and responds to
 * `eth_chainId`. Throws, with anvil's stderr, if it exits first (a busy port, for example) or
 * does not respond within 20 s.
 */
export async function startAnvil(options: StartAnvilOptions = {}): Promise<Chain> {
  const port = options.port ?? (await findFreePort());
  const rpcUrl = `http://${ANVIL_HOST}:${port}`;
  const anvil = spawnAnvil(anvilArguments(port, options), port);

  let chainId: bigint;
  try {
    chainId = await waitForChainId(rpcUrl, anvil);
  } catch (error) {
    await anvil.stop();
    throw error;
  }

  const provider = new JsonRpcProvider(rpcUrl, Network.from(chainId), {
    staticNetwork: true,
    pollingInterval: PROVIDER_POLLING_INTERVAL_MS,
    // ethers v6 shares identical requests for 250 ms by default, so two nonce or block
    // lookups in quick succession could return the same stale result. Tests read fresh state.
    cacheTimeout: -1,
  });

  const stop = async (): Promise<void> => {
    provider.destroy();
    await anvil.stop();
  };
  return { rpcUrl, port, chainId, provider, process: anvil.child, stop };
}

function anvilArguments(port: number, options: StartAnvilOptions): string[] {
  const args = ['--host', ANVIL_HOST, '--port', String(port)];
  if (options.blockTime !== undefined) args.push('--block-time', String(options.blockTime));
  if (options.noMining === true) args.push('--no-mining');
  if (options.chainId !== undefined) args.push('--chain-id', String(options.chainId));
  if (options.stateFile !== undefined) {
    // Without --preserve-historical-states a restarted anvil keeps only the latest state, so
    // calls at an earlier block (which the daemon makes) would fail after a restart.
    args.push('--state', options.stateFile, '--preserve-historical-states');
  }
  return args;
}

/** Returns a port that was free on 127.0.0.1 a moment ago. Another process may still take it. */
async function findFreePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, ANVIL_HOST, resolve);
  });

  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

interface AnvilProcess {
  child: ChildProcess;
  /**
   * True once anvil has printed `Listening on <host>:<port>`, which anvil 1.7.1 prints only
   * after binding the port. An `eth_chainId` response before that may come from another
   * process on the same port.
   */
  isListening: () => boolean;
  stderr: () => string;
  exited: Promise<void>;
  stop: () => Promise<void>;
}

function spawnAnvil(args: string[], port: number): AnvilProcess {
  // stdout is read, not inherited, so anvil's banner and request log stay out of test output.
  const child = spawn(anvilExecutable(), args, {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  trackUntilExit(child);

  const listeningLine = `Listening on ${ANVIL_HOST}:${port}`;
  let stdoutTail = '';
  let listening = false;
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (chunk: string) => {
    if (listening) return;
    stdoutTail = (stdoutTail + chunk).slice(-STDOUT_TAIL_CHARS);
    listening = stdoutTail.includes(listeningLine);
  });

  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-STDERR_TAIL_CHARS);
  });

  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', (error) => {
      stderr += `\nfailed to start anvil: ${error.message}`;
      if (child.pid === undefined) resolve();
    });
  });

  const stop = async (): Promise<void> => {
    if (hasExited(child)) return;
    child.kill('SIGTERM');
    const forceKill = setTimeout(() => child.kill('SIGKILL'), ANVIL_STOP_GRACE_MS);
    await exited;
    clearTimeout(forceKill);
  };
  return { child, isListening: () => listening, stderr: () => stderr, exited, stop };
}

/**
 * Returns the native anvil binary from its platform package, the file that
 * node_modules/.bin/anvil runs. That wrapper (@foundry-rs/anvil 1.7.1) forwards SIGTERM and
 * exits at once without waiting for anvil, and a SIGKILL leaves anvil running as an orphan,
 * so stopping the wrapper could not tell when the port is free and the state file written.
 */
function anvilExecutable(): string {
  const arch = process.arch === 'x64' ? 'amd64' : process.arch;
  const binary = process.platform === 'win32' ? 'anvil.exe' : 'anvil';
  const native = path.join(
    NODE_MODULES,
    `@foundry-rs/anvil-${process.platform}-${arch}/bin`,
    binary,
  );
  if (fs.existsSync(native)) return native;

  // NOTE: through the wrapper, stop() may resolve before anvil has written its state file.
  return path.join(NODE_MODULES, '.bin/anvil');
}

/** True when the process has exited or never started (spawn failed, so it has no pid). */
function hasExited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null || child.pid === undefined;
}

/**
 * Kills every anvil still running when the test process exits or is stopped by a signal (the
 * test runner and `timeout` send SIGTERM), so none outlives it.
 */
function trackUntilExit(child: ChildProcess): void {
  runningAnvils.add(child);
  child.once('exit', () => runningAnvils.delete(child));

  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  process.once('exit', killRunningAnvils);
  for (const signal of TERMINATING_SIGNALS) process.once(signal, onTerminatingSignal);
}

function killRunningAnvils(): void {
  for (const anvil of runningAnvils) anvil.kill('SIGKILL');
}

// NOTE: a SIGKILL of the test process cannot be caught, so it still leaves anvil running.
function onTerminatingSignal(signal: NodeJS.Signals): void {
  killRunningAnvils();
  for (const other of TERMINATING_SIGNALS) process.off(other, onTerminatingSignal);

  // A listener replaces Node's default of dying of the signal, so restore that default and
  // raise the signal again, unless other code has its own listener and so decides instead.
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
}

async function waitForChainId(rpcUrl: string, anvil: AnvilProcess): Promise<bigint> {
  const deadline = Date.now() + ANVIL_READY_TIMEOUT_MS;

  while (Date.now() < deadline) {
    if (hasExited(anvil.child)) {
      const status = anvil.child.exitCode ?? anvil.child.signalCode;
      throw new Error(
        `anvil exited (${String(status)}) before it responded to eth_chainId on ${rpcUrl}; stderr:\n${anvil.stderr()}`,
      );
    }

    if (anvil.isListening()) {
      const chainId = await requestChainId(rpcUrl);
      if (chainId !== undefined) return chainId;
    }
    await new Promise((resolve) => setTimeout(resolve, ANVIL_READY_POLL_MS));
  }

  throw new Error(
    `anvil did not respond to eth_chainId on ${rpcUrl} within ${ANVIL_READY_TIMEOUT_MS} ms; stderr:\n${anvil.stderr()}`,
  );
}

/** Returns the chain id, or undefined when the request fails or the response has no result. */
async function requestChainId(rpcUrl: string): Promise<bigint | undefined> {
  try {
    const response = await fetch(rpcUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'eth_chainId', params: [] }),
      signal: AbortSignal.timeout(ANVIL_REQUEST_TIMEOUT_MS),
    });
    if (!response.ok) return undefined;

    const body = (await response.json()) as { result?: unknown };
    return typeof body.result === 'string' ? BigInt(body.result) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Deploys the EnergyOracle from the governance wallet and authorises `signers`, waiting for
 * each receipt. Needs a chain that mines: with `noMining` it waits until blocks are mined.
 */
export async function deployOracle(
  chain: Chain,
  options: DeployOracleOptions = {},
): Promise<DeployedOracle> {
  const { abi, bytecode } = compileOracle();
  const governance = new Wallet(options.governanceKey ?? DEFAULT_ANVIL_KEYS[0], chain.provider);
  // Counts nonces locally across the deploy and setSigner sends. A failed send throws out of
  // this function, so the count is never used after the gap that the failure leaves.
  const sender = new NonceManager(governance);

  const deployment = await new ContractFactory(abi, bytecode, sender).deploy();
  await deployment.waitForDeployment();
  const address = await deployment.getAddress();

  const contract = new Contract(address, abi, sender);
  for (const signer of options.signers ?? []) {
    const transaction = await contract.getFunction('setSigner')(signer, true);
    await transaction.wait();
  }
  return { address, contract: new Contract(address, abi, governance), governance };
}

/** Reads the oracle's `AttestationAccepted` events from `fromBlock` to the latest block. */
export async function readAcceptances(
  chain: Chain,
  address: string,
  fromBlock = 0,
): Promise<Acceptance[]> {
  const oracle = new Contract(address, compileOracle().abi, chain.provider);
  const events = await oracle.queryFilter('AttestationAccepted', fromBlock, 'latest');
  return events.map(toAcceptance);
}

function toAcceptance(event: EventLog | Log): Acceptance {
  if (!('args' in event)) {
    throw new Error(
      `log ${event.index} of transaction ${event.transactionHash} is not an AttestationAccepted event`,
    );
  }

  const args = event.args.toObject(true) as Record<string, unknown>;
  const att = args.att as Record<string, unknown>;
  return {
    user: stringField(args, 'user'),
    jobId: bigintField(args, 'jobId'),
    nonce: bigintField(args, 'nonce'),
    att: {
      jobId: bigintField(att, 'jobId'),
      user: stringField(att, 'user'),
      energy: bigintField(att, 'energy'),
      degeneracy: bigintField(att, 'degeneracy'),
      epochId: bigintField(att, 'epochId'),
      role: bigintField(att, 'role'),
      nonce: bigintField(att, 'nonce'),
      deadline: bigintField(att, 'deadline'),
      uPre: bigintField(att, 'uPre'),
      uPost: bigintField(att, 'uPost'),
      value: bigintField(att, 'value'),
    },
    signer: stringField(args, 'signer'),
    txHash: event.transactionHash,
    blockNumber: event.blockNumber,
  };
}

function bigintField(record: Record<string, unknown>, name: string): bigint {
  const value = record[name];
  if (typeof value !== 'bigint') {
    throw new TypeError(`AttestationAccepted field ${name} is ${typeof value}, expected bigint`);
  }
  return value;
}

function stringField(record: Record<string, unknown>, name: string): string {
  const value = record[name];
  if (typeof value !== 'string') {
    throw new TypeError(`AttestationAccepted field ${name} is ${typeof value}, expected string`);
  }
  return value;
}

/** Mines `blocks` blocks at once (`anvil_mine`), including any pending transactions. */
export async function mine(chain: Chain, blocks = 1): Promise<void> {
  await chain.provider.send('anvil_mine', [toQuantity(blocks)]);
}

/**
 * Moves the chain clock forward by `seconds` (`evm_increaseTime`) and mines one block, so
 * that calls at the latest block already see the new time.
 */
export async function increaseTime(chain: Chain, seconds: number): Promise<void> {
  await chain.provider.send('evm_increaseTime', [toQuantity(seconds)]);
  await mine(chain);
}

/** Returns the timestamp of the latest block, in seconds. */
export async function latestTimestamp(chain: Chain): Promise<bigint> {
  const block = await chain.provider.getBlock('latest');
  if (block === null) throw new Error(`${chain.rpcUrl} returned no latest block`);
  return BigInt(block.timestamp);
}
