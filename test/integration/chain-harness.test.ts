import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { after, before, describe, test } from 'node:test';
import {
  Contract,
  Signature,
  TypedDataEncoder,
  Wallet,
  ZeroAddress,
  concat,
  isError,
  toBeHex,
} from 'ethers';
import type { TransactionReceipt, TypedDataDomain } from 'ethers';
import type { Chain, DeployedOracle } from '../support/chain';
import {
  ANVIL_KEYS,
  compileOracle,
  deployOracle,
  increaseTime,
  latestTimestamp,
  mine,
  readAcceptances,
  startAnvil,
} from '../support/chain';

// Written out from the contract's EIP-712 type string rather than imported from the daemon,
// so that these tests check the contract against the specification and not against itself.
const ATTESTATION_TYPES = {
  EnergyAttestation: [
    { name: 'jobId', type: 'uint256' },
    { name: 'user', type: 'address' },
    { name: 'energy', type: 'int256' },
    { name: 'degeneracy', type: 'uint256' },
    { name: 'epochId', type: 'uint256' },
    { name: 'role', type: 'uint8' },
    { name: 'nonce', type: 'uint256' },
    { name: 'deadline', type: 'uint256' },
    { name: 'uPre', type: 'uint256' },
    { name: 'uPost', type: 'uint256' },
    { name: 'value', type: 'uint256' },
  ],
};

const UINT256_MAX = (1n << 256n) - 1n;
const INT256_MIN = -(1n << 255n);
const SECP256K1_ORDER = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
const DEADLINE_AHEAD_SEC = 3600n;

interface Attestation {
  jobId: bigint;
  user: string;
  energy: bigint;
  degeneracy: bigint;
  epochId: bigint;
  role: number;
  nonce: bigint;
  deadline: bigint;
  uPre: bigint;
  uPost: bigint;
  value: bigint;
}

function keyAt(index: number): string {
  const key = ANVIL_KEYS[index];
  if (key === undefined) throw new RangeError(`ANVIL_KEYS has no key at index ${index}`);
  return key;
}

// A stuck transaction would otherwise wait forever in `wait()`.
describe('chain harness and EnergyOracle', { timeout: 60_000 }, () => {
  const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'chain-harness-'));
  const stateFile = path.join(folder, 'anvil-state.json');
  const signer = new Wallet(keyAt(1));
  const user = new Wallet(keyAt(2)).address;
  const outsider = new Wallet(keyAt(4));
  let chain: Chain;
  let oracle: DeployedOracle;
  let submitter: Contract;
  let domain: TypedDataDomain;
  let nextJobId = 1n;

  before(async () => {
    chain = await startAnvil({ stateFile });
    oracle = await deployOracle(chain, { signers: [signer.address] });
    const sender = new Wallet(keyAt(3), chain.provider);
    submitter = new Contract(oracle.address, compileOracle().abi, sender);
    domain = {
      name: 'EnergyOracle',
      version: '1',
      chainId: chain.chainId,
      verifyingContract: oracle.address,
    };
  });

  after(async () => {
    await chain.stop();
    fs.rmSync(folder, { recursive: true, force: true });
  });

  async function nonceOf(account: string): Promise<bigint> {
    return (await oracle.contract.getFunction('nonces')(account)) as bigint;
  }

  /** Builds an attestation for `user` with the next nonce and a deadline an hour ahead. */
  async function nextAttestation(overrides: Partial<Attestation> = {}): Promise<Attestation> {
    return {
      jobId: nextJobId++,
      user,
      energy: -1234n,
      degeneracy: 2n,
      epochId: 20_000n,
      role: 2,
      nonce: (await nonceOf(user)) + 1n,
      deadline: (await latestTimestamp(chain)) + DEADLINE_AHEAD_SEC,
      uPre: 1500n,
      uPost: 2500n,
      value: 987_654n,
      ...overrides,
    };
  }

  async function sign(attestation: Attestation, wallet: Wallet = signer): Promise<string> {
    return wallet.signTypedData(domain, ATTESTATION_TYPES, attestation);
  }

  async function simulate(attestation: Attestation, signature: string): Promise<string> {
    return (await submitter.getFunction('verify').staticCall(attestation, signature)) as string;
  }

  async function send(attestation: Attestation, signature: string): Promise<TransactionReceipt> {
    const transaction = await submitter.getFunction('verify')(attestation, signature);
    const receipt = (await transaction.wait()) as TransactionReceipt | null;
    assert.ok(receipt, 'verify transaction has a receipt');
    return receipt;
  }

  /** Checks that `verify` returns the zero address and the mined transaction changes nothing. */
  async function assertRejected(attestation: Attestation, signature: string): Promise<void> {
    const nonceBefore = await nonceOf(attestation.user);
    const acceptancesBefore = (await readAcceptances(chain, oracle.address)).length;

    assert.equal(await simulate(attestation, signature), ZeroAddress);
    const receipt = await send(attestation, signature);

    assert.equal(receipt.status, 1);
    assert.equal(receipt.logs.length, 0);
    assert.equal(await nonceOf(attestation.user), nonceBefore);
    assert.equal((await readAcceptances(chain, oracle.address)).length, acceptancesBefore);
  }

  /**
   * Returns the name of the custom error that `transaction` reverted with. ethers 6.17 leaves
   * a custom error raised during gas estimation undecoded (`revert` is null), so the revert
   * data is decoded here with the oracle's interface.
   */
  async function revertName(transaction: Promise<unknown>): Promise<string | undefined> {
    try {
      await transaction;
    } catch (error) {
      assert.ok(isError(error, 'CALL_EXCEPTION'), `expected a revert, got ${String(error)}`);
      assert.ok(error.data, `the revert carries no data: ${error.message}`);
      return oracle.contract.interface.parseError(error.data)?.name;
    }
    assert.fail('the transaction did not revert');
  }

  test('ANVIL_KEYS match anvil accounts', async () => {
    const accounts = (await chain.provider.send('eth_accounts', [])) as string[];
    const addresses = ANVIL_KEYS.map((key) => new Wallet(key).address.toLowerCase());

    assert.equal(ANVIL_KEYS.length, 10);
    assert.deepEqual(
      addresses,
      accounts.map((account) => account.toLowerCase()),
    );
  });

  test('compileOracle writes its cache', () => {
    const compiled = compileOracle();
    const cacheFolder = path.resolve(__dirname, '../../node_modules/.cache/operator-telemetry');
    const cacheFiles = fs
      .readdirSync(cacheFolder)
      .filter((name) => /^energy-oracle-[0-9a-f]{64}\.json$/.test(name))
      .map((name) => JSON.parse(fs.readFileSync(path.join(cacheFolder, name), 'utf8')) as unknown);

    assert.match(compiled.bytecode, /^0x[0-9a-f]+$/);
    assert.ok(
      cacheFiles.some((cached) => isDeepStrictEqual(cached, compiled)),
      'a cache file contains the output',
    );
    assert.deepEqual(compileOracle(), compiled);
  });

  test('oracle deploys with its signers', async () => {
    const contract = oracle.contract;

    assert.notEqual(await chain.provider.getCode(oracle.address), '0x');
    assert.equal(await contract.getFunction('owner')(), oracle.governance.address);
    assert.equal(await contract.getFunction('isSigner')(signer.address), true);
    assert.equal(await contract.getFunction('isSigner')(outsider.address), false);
    assert.equal(await contract.getFunction('signerCount')(), 1n);
    assert.deepEqual([...(await contract.getFunction('getSigners')())], [signer.address]);
  });

  test('hashAttestation equals TypedDataEncoder', async () => {
    const cases: Attestation[] = [
      await nextAttestation(),
      await nextAttestation({
        energy: INT256_MIN,
        role: 255,
        value: UINT256_MAX,
        nonce: UINT256_MAX,
      }),
      await nextAttestation({ energy: 0n, degeneracy: 0n, uPre: 0n, uPost: 0n, value: 0n }),
    ];

    for (const attestation of cases) {
      const expected = TypedDataEncoder.hash(domain, ATTESTATION_TYPES, attestation);
      const actual = (await oracle.contract.getFunction('hashAttestation')(attestation)) as string;
      assert.equal(actual, expected, `digest of energy ${attestation.energy}`);
    }
  });

  test('signed attestation is accepted', async () => {
    const attestation = await nextAttestation();
    const signature = await sign(attestation);

    assert.equal(await simulate(attestation, signature), signer.address);
    const receipt = await send(attestation, signature);

    assert.equal(receipt.status, 1);
    assert.equal(await nonceOf(user), attestation.nonce);
    const acceptances = await readAcceptances(chain, oracle.address, receipt.blockNumber);
    assert.equal(acceptances.length, 1);
    const [acceptance] = acceptances;
    assert.equal(acceptance?.user, user);
    assert.equal(acceptance?.jobId, attestation.jobId);
    assert.equal(acceptance?.nonce, attestation.nonce);
    assert.equal(acceptance?.signer, signer.address);
    assert.equal(acceptance?.txHash, receipt.hash);
    assert.equal(acceptance?.blockNumber, receipt.blockNumber);
    assert.deepEqual(acceptance?.att, { ...attestation, role: BigInt(attestation.role) });
  });

  test('replayed attestation returns zero address', async () => {
    const attestation = await nextAttestation();
    const signature = await sign(attestation);
    await send(attestation, signature);

    await assertRejected(attestation, signature);
  });

  test('expired deadline returns zero address', async () => {
    const attestation = await nextAttestation({ deadline: (await latestTimestamp(chain)) - 1n });

    await assertRejected(attestation, await sign(attestation));
  });

  test('deadline equal to block time is accepted', async () => {
    const blockTime = (await latestTimestamp(chain)) + 100n;
    const attestation = await nextAttestation({ deadline: blockTime });
    await chain.provider.send('evm_setNextBlockTimestamp', [Number(blockTime)]);

    const receipt = await send(attestation, await sign(attestation));

    const acceptances = await readAcceptances(chain, oracle.address, receipt.blockNumber);
    assert.equal(acceptances.length, 1);
    assert.equal(await nonceOf(user), attestation.nonce);
  });

  test('nonce not above current returns zero address', async () => {
    const current = await nonceOf(user);
    assert.ok(current >= 2n, `the earlier tests accepted nonces, current is ${current}`);

    for (const nonce of [current, current - 1n, 0n]) {
      const attestation = await nextAttestation({ nonce });
      await assertRejected(attestation, await sign(attestation));
    }
  });

  test('unauthorised signer returns zero address', async () => {
    const attestation = await nextAttestation();

    await assertRejected(attestation, await sign(attestation, outsider));
  });

  test('malformed signatures return zero address', async () => {
    const attestation = await nextAttestation();
    const valid = Signature.from(await sign(attestation));
    // The same signature with s mirrored into the upper half of the curve order and v flipped.
    // ecrecover accepts it, but OpenZeppelin's ECDSA rejects it as malleable.
    const mirroredS = toBeHex(SECP256K1_ORDER - BigInt(valid.s), 32);
    const highS = concat([valid.r, mirroredS, valid.v === 27 ? '0x1c' : '0x1b']);
    const cases = {
      empty: '0x',
      compact: valid.compactSerialized,
      'v of 0': `${valid.serialized.slice(0, -2)}00`,
      'high s': highS,
      'zero bytes': `0x${'00'.repeat(65)}`,
    };

    for (const [name, signature] of Object.entries(cases)) {
      assert.equal(await simulate(attestation, signature), ZeroAddress, name);
    }
    await assertRejected(attestation, cases.compact);
  });

  test('setSigner is restricted to governance', async () => {
    const asOutsider = new Contract(
      oracle.address,
      compileOracle().abi,
      new Wallet(outsider.privateKey, chain.provider),
    );

    const setSigner = oracle.contract.getFunction('setSigner');

    assert.equal(
      await revertName(asOutsider.getFunction('setSigner')(outsider.address, true)),
      'OwnableUnauthorizedAccount',
    );
    assert.equal(await revertName(setSigner(ZeroAddress, true)), 'InvalidSigner');
    assert.equal(await oracle.contract.getFunction('isSigner')(outsider.address), false);
  });

  test('signer list stays consistent', async () => {
    const setSigner = oracle.contract.getFunction('setSigner');
    const isSigner = oracle.contract.getFunction('isSigner');
    const first = new Wallet(keyAt(5)).address;
    const second = new Wallet(keyAt(6)).address;
    const third = new Wallet(keyAt(7)).address;
    const signers = async (): Promise<string[]> => [
      ...((await oracle.contract.getFunction('getSigners')()) as string[]),
    ];

    for (const address of [first, second, third]) await (await setSigner(address, true)).wait();
    await (await setSigner(first, true)).wait();
    assert.equal(await oracle.contract.getFunction('signerCount')(), 4n);

    await (await setSigner(second, false)).wait();
    await (await setSigner(second, false)).wait();
    assert.deepEqual(new Set(await signers()), new Set([signer.address, first, third]));
    assert.equal(await oracle.contract.getFunction('signerCount')(), 3n);
    assert.equal(await isSigner(second), false);

    await (await setSigner(third, false)).wait();
    await (await setSigner(first, false)).wait();
    assert.deepEqual(await signers(), [signer.address]);
    assert.equal(await isSigner(first), false);
    assert.equal(await isSigner(third), false);
  });

  test('mine and increaseTime move the chain', async () => {
    const height = await chain.provider.getBlockNumber();
    const time = await latestTimestamp(chain);

    await mine(chain, 3);
    assert.equal(await chain.provider.getBlockNumber(), height + 3);

    await increaseTime(chain, 600);
    assert.equal(await chain.provider.getBlockNumber(), height + 4);
    assert.ok((await latestTimestamp(chain)) >= time + 600n);
  });

  test('startAnvil applies chainId and noMining', async () => {
    const other = await startAnvil({ chainId: 4242, noMining: true });
    try {
      assert.equal(other.chainId, 4242n);
      assert.equal((await other.provider.getNetwork()).chainId, 4242n);

      const wallet = new Wallet(keyAt(5), other.provider);
      const transaction = await wallet.sendTransaction({ to: user, value: 1n });
      assert.equal(await other.provider.getBlockNumber(), 0);
      await mine(other);
      assert.equal((await other.provider.getTransactionReceipt(transaction.hash))?.blockNumber, 1);
    } finally {
      await other.stop();
    }
    assert.ok(other.process.exitCode !== null || other.process.signalCode !== null);
  });

  test('startAnvil rejects a busy port', async () => {
    await assert.rejects(startAnvil({ port: chain.port }), /Address already in use/);

    assert.equal(chain.process.exitCode, null);
    assert.ok((await chain.provider.getBlockNumber()) > 0, 'the first anvil still responds');
  });

  // Last, because it replaces `chain` and leaves `submitter` bound to the stopped node.
  test('restart with state keeps nonces', async () => {
    const port = chain.port;
    const nonce = await nonceOf(user);
    const acceptances = await readAcceptances(chain, oracle.address);
    const height = await chain.provider.getBlockNumber();
    assert.ok(nonce > 0n);

    await chain.stop();
    chain = await startAnvil({ port, stateFile });

    const oracleAfter = new Contract(oracle.address, compileOracle().abi, chain.provider);
    assert.equal(chain.port, port);
    assert.equal(await chain.provider.getBlockNumber(), height);
    assert.equal(await oracleAfter.getFunction('nonces')(user), nonce);
    assert.equal(await oracleAfter.getFunction('isSigner')(signer.address), true);
    assert.deepEqual(await readAcceptances(chain, oracle.address), acceptances);
    const firstAcceptance = acceptances[0];
    assert.ok(firstAcceptance);
    const nonceBeforeFirst = await oracleAfter.getFunction('nonces')(user, {
      blockTag: firstAcceptance.blockNumber - 1,
    });
    assert.equal(nonceBeforeFirst, 0n, 'state at an earlier block is still readable');
  });
});
