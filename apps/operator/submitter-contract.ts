import type { TransactionReceipt, Wallet } from 'ethers';
import {
  Contract,
  getAddress,
  FetchRequest,
  JsonRpcProvider,
  Network,
  ZeroAddress,
  isError,
  keccak256,
  verifyTypedData,
} from 'ethers';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Attestation } from './attestation';
import { ATTESTATION_TYPES, attestationDomain, attestationFromJson } from './attestation';
import { RejectedError, RetryableError, describeError } from './errors';
import type { RejectionReason } from './errors';
import type { SignerAccountMeter } from './metrics';
import type { ContractNonceReader } from './nonces';
import type { PendingRevision, TransactionRecord } from './state';
import type { Acceptance, DeliveryContext, Inspection, Submitter, TargetInfo } from './submitter';

/**
 * Contract mode: deliver attestations by calling `verify(att, sig)` on the EnergyOracle.
 *
 * `verify` does not revert on a bad attestation: it returns the zero address and changes
 * nothing. A mined transaction with status 1 therefore proves nothing by itself. Acceptance
 * is proven by `nonces(user)` having reached the attestation's nonce in the block of our
 * transaction, while a call of `verify` just before that block would have accepted it.
 */

export const ORACLE_ABI = [
  'function verify((uint256 jobId,address user,int256 energy,uint256 degeneracy,uint256 epochId,uint8 role,uint256 nonce,uint256 deadline,uint256 uPre,uint256 uPost,uint256 value) att, bytes sig) returns (address)',
  'function nonces(address user) view returns (uint256)',
  'function isSigner(address account) view returns (bool)',
];

export interface ContractSubmitterOptions {
  rpcUrl: string;
  oracleAddress: string;
  /** The configured chain id; the RPC must report the same one. */
  expectedChainId: bigint | undefined;
  confirmations: number;
  requestTimeoutMs: number;
  txTimeoutMs: number;
  maxFeePerGasWei: bigint | undefined;
  priorityFeePerGasWei: bigint | undefined;
}

/** How often a transaction's receipt is polled while waiting for it. */
const RECEIPT_POLL_MS = 250;
/** Raw transactions kept for broadcasting again after a re-org. */
const MAX_RECENT_TRANSACTIONS = 1024;
/** While no receipt shows up, every this many polls the node is asked whether it still has the transaction. */
const DROP_CHECK_EVERY_POLLS = 8;

export class ContractSubmitter implements Submitter, ContractNonceReader {
  private provider: JsonRpcProvider | undefined;
  private oracle: Contract | undefined;
  private chainId: bigint | undefined;
  private nextAccountNonce: number | undefined;
  private sendQueue: Promise<unknown> = Promise.resolve();
  /** Whether the node supports debug_traceTransaction; undefined until the first request. */
  private traceAvailable: boolean | undefined;
  /**
   * Raw transactions recently broadcast, by account nonce. After a re-org or a drop they are
   * broadcast again from the account's mined nonce upwards: a missing lower nonce would
   * otherwise hold every later transaction of the account in the node's queue.
   */
  private readonly recentTransactions = new Map<number, string>();

  constructor(
    private readonly options: ContractSubmitterOptions,
    private readonly wallet: Wallet,
    /** Receives fees and the signer balance for the metrics; absent when metrics are off. */
    private readonly meter?: SignerAccountMeter,
  ) {}

  async connect(): Promise<TargetInfo> {
    const chainId = await this.fetchChainId();
    const expected = this.options.expectedChainId;
    if (expected !== undefined && expected !== chainId) {
      throw new RetryableError(
        `the RPC endpoint reports chain id ${chainId} but ENERGY_ORACLE_CHAIN_ID is ${expected}; ` +
          'fix one of them (attestations signed for the wrong chain would be rejected)',
      );
    }

    if (this.provider === undefined) {
      const request = new FetchRequest(this.options.rpcUrl);
      request.timeout = this.options.requestTimeoutMs;
      this.provider = new JsonRpcProvider(request, Network.from(chainId), { staticNetwork: true });
      this.oracle = new Contract(this.options.oracleAddress, ORACLE_ABI, this.provider);
      this.chainId = chainId;
    }

    const code = await this.rpc(
      () => this.requireProvider().getCode(this.options.oracleAddress),
      'reading the oracle code',
    );
    if (code === '0x') {
      throw new RetryableError(
        `no contract at ENERGY_ORACLE_ADDRESS ${this.options.oracleAddress} on chain ${chainId}; check the address and the RPC endpoint`,
      );
    }
    // The readiness check calls connect() too, so the balance is also refreshed while idle.
    if (this.meter !== undefined) this.meter.setSignerBalance(await this.signerBalance());
    return {
      chainId,
      target: `${redactUrl(this.options.rpcUrl)} oracle ${this.options.oracleAddress}`,
    };
  }

  async currentTime(): Promise<bigint> {
    const block = await this.rpc(
      () => this.requireProvider().getBlock('latest'),
      'reading the latest block',
    );
    if (block === null) throw new RetryableError('the RPC endpoint returned no latest block');
    return BigInt(block.timestamp);
  }

  async signerAuthorised(): Promise<boolean> {
    return this.rpc(
      () => this.callOracle<boolean>('isSigner', [this.wallet.address]),
      'reading isSigner',
    );
  }

  /** Reads the signer account's balance in wei, which pays for gas. */
  async signerBalance(): Promise<bigint> {
    return this.rpc(
      () => this.requireProvider().getBalance(this.wallet.address),
      'reading the signer balance',
    );
  }

  async usersWithAcceptedAttestations(users: string[]): Promise<number> {
    let count = 0;
    for (const user of users) {
      if ((await this.acceptedNonce(user)) > 0n) count += 1;
    }
    return count;
  }

  async acceptedNonce(user: string, blockTag?: number): Promise<bigint> {
    return this.rpc(
      () => this.callOracle<bigint>('nonces', [user], blockTag),
      'reading nonces(user)',
    );
  }

  /**
   * Finds the status of a revision. Every transaction sent for it is looked at, because an
   * older one (dropped, then mined after all) may be the one that carried it.
   */
  async inspect(revision: PendingRevision): Promise<Inspection> {
    const attestation = attestationFromJson(revision.attestation);
    const provider = this.requireProvider();
    const unmined: TransactionRecord[] = [];
    let minedButNotAccepted: Inspection | undefined;

    for (const tx of [...revision.txs].reverse()) {
      const receipt = await this.rpc(
        () => provider.getTransactionReceipt(tx.txHash),
        'reading a receipt',
      );
      if (receipt === null) {
        unmined.push(tx);
        continue;
      }
      const judged = await this.judgeReceipt(attestation, revision.signature, receipt);
      if (judged.state === 'accepted' || judged.state === 'in-flight') return judged;
      minedButNotAccepted ??= judged;
    }

    for (const tx of unmined) {
      const transaction = await this.rpc(
        () => provider.getTransaction(tx.txHash),
        'reading a transaction',
      );
      if (transaction !== null) {
        return { state: 'in-flight', reason: `transaction ${tx.txHash} is waiting to be mined` };
      }
    }

    const accepted = await this.acceptedNonce(attestation.user);
    if (accepted < attestation.nonce) {
      return {
        state: 'not-accepted',
        reason: `nonces(user) is ${accepted}, below this attestation's nonce ${attestation.nonce}`,
      };
    }
    if (minedButNotAccepted?.state === 'overtaken') return minedButNotAccepted;

    // The nonce moved, and no receipt of ours shows it. If the account nonce of one of our
    // transactions is used, that transaction may have been mined on a node whose receipts lag
    // behind: taking a new nonce then could attest the job twice, so wait instead.
    const mined = await this.rpc(
      () => provider.getTransactionCount(this.wallet.address, 'latest'),
      'reading the account nonce',
    );
    const unexplained = unmined.find((tx) => tx.accountNonce < mined);
    if (unexplained !== undefined) {
      // NOTE: if another revision's transaction used that account nonce, this waits until an
      // operator looks: the log line repeats on every attempt.
      return {
        state: 'in-flight',
        reason:
          `nonces(user) is ${accepted}, and account nonce ${unexplained.accountNonce} of transaction ` +
          `${unexplained.txHash} is used but its receipt cannot be found; waiting for it before any new nonce`,
      };
    }
    return {
      state: 'overtaken',
      reason: `nonces(user) is ${accepted}, at or above this attestation's nonce ${attestation.nonce}, and no transaction of ours carried it`,
    };
  }

  async deliver(revision: PendingRevision, context: DeliveryContext): Promise<Acceptance> {
    const inspection = await this.inspect(revision);
    if (inspection.state === 'accepted') return inspection.acceptance;
    if (inspection.state === 'overtaken') throw new RejectedError('nonce-used', inspection.reason);

    let tx = revision.tx;
    if (inspection.state !== 'in-flight' || tx === undefined) {
      const attestation = attestationFromJson(revision.attestation);
      await this.preflight(attestation, revision.signature);
      tx = await this.broadcast(attestation, revision.signature, context);
    }

    const receipt = await this.waitForReceipt(tx, context);
    await this.refreshSignerBalance(context);
    const judged = await this.judgeReceipt(
      attestationFromJson(revision.attestation),
      revision.signature,
      receipt,
    );
    if (judged.state === 'accepted') return judged.acceptance;
    if (judged.state === 'in-flight') throw new RetryableError(judged.reason);
    throw judged.state === 'overtaken'
      ? new RejectedError('nonce-used', judged.reason)
      : new RetryableError(
          `transaction ${tx.txHash} was mined but did not carry the attestation: ${judged.reason}`,
        );
  }

  async close(): Promise<void> {
    this.provider?.destroy();
    this.provider = undefined;
    return Promise.resolve();
  }

  /**
   * Runs `verify` as a call first: the zero address means the contract would reject the
   * attestation, and sending it would only burn gas.
   */
  private async preflight(attestation: Attestation, signature: string): Promise<void> {
    const signer = await this.rpc(
      () => this.callOracle<string>('verify', [attestation, signature], undefined, true),
      'simulating verify',
    );
    if (signer !== ZeroAddress) return;
    const reason = await this.diagnose(attestation, signature);
    throw new RejectedError(
      reason.code,
      `the oracle would reject the attestation: ${reason.message}`,
    );
  }

  /** Finds which of the contract's three rules rejected an attestation, by reading the chain. */
  private async diagnose(
    attestation: Attestation,
    signature: string,
    blockTag?: number,
  ): Promise<{ code: RejectionReason; message: string }> {
    const accepted = await this.acceptedNonce(attestation.user, blockTag);
    if (attestation.nonce <= accepted) {
      return {
        code: 'nonce-used',
        message: `nonce ${attestation.nonce} is not above nonces(user) = ${accepted}`,
      };
    }

    const block = await this.rpc(
      () => this.requireProvider().getBlock(blockTag ?? 'latest'),
      'reading a block',
    );
    if (block !== null && attestation.deadline < BigInt(block.timestamp)) {
      return {
        code: 'deadline-passed',
        message: `deadline ${attestation.deadline} is before block time ${block.timestamp}`,
      };
    }

    const domain = attestationDomain(this.chainId ?? 0n, this.options.oracleAddress);
    const recovered = verifyTypedData(domain, ATTESTATION_TYPES, attestation, signature);
    const authorised = await this.rpc(
      () => this.callOracle<boolean>('isSigner', [recovered], blockTag),
      'reading isSigner',
    );
    if (!authorised) {
      return {
        code: 'signer-not-authorised',
        message: `signer ${recovered} is not authorised on the oracle; ask its governance to call setSigner(${recovered}, true)`,
      };
    }
    return {
      code: 'unexpected-status',
      message: 'verify returned the zero address for no reason the daemon can see',
    };
  }

  /**
   * Decides what a mined transaction did. Accepted means: status 1, `nonces(user)` at or
   * above our nonce in that block, and `verify` would have accepted the attestation at the
   * end of the block before, so the nonce moved because of this attestation.
   */
  private async judgeReceipt(
    attestation: Attestation,
    signature: string,
    receipt: TransactionReceipt,
  ): Promise<Inspection> {
    // A mined transaction costs gas whether it reverted or not; the meter counts each hash once.
    this.meter?.recordGasSpent(receipt.fee, receipt.hash);
    if (receipt.status !== 1) {
      return { state: 'not-accepted', reason: `transaction ${receipt.hash} reverted` };
    }

    const head = await this.rpc(
      () => this.requireProvider().getBlockNumber(),
      'reading the block number',
    );
    const confirmations = head - receipt.blockNumber + 1;
    if (confirmations < this.options.confirmations) {
      return {
        state: 'in-flight',
        reason: `transaction ${receipt.hash} has ${confirmations} of ${this.options.confirmations} confirmations`,
      };
    }

    const acceptedAfter = await this.acceptedNonce(attestation.user, receipt.blockNumber);
    const returned = await this.verifyResult(receipt.hash);
    if (returned !== undefined) {
      if (returned !== ZeroAddress) return accepted(receipt);
      if (acceptedAfter >= attestation.nonce) {
        return {
          state: 'overtaken',
          reason: `verify returned the zero address in transaction ${receipt.hash}: another attestation took nonce ${attestation.nonce} first`,
        };
      }
      const reason = await this.diagnose(attestation, signature, receipt.blockNumber);
      return { state: 'not-accepted', reason: reason.message };
    }

    // Without a call trace, acceptance is inferred: the nonce reached ours in this block,
    // verify would have accepted the attestation at the end of the block before, and no
    // other verify call for the same agent came earlier in the block.
    if (acceptedAfter < attestation.nonce) {
      const reason = await this.diagnose(attestation, signature, receipt.blockNumber);
      return { state: 'not-accepted', reason: reason.message };
    }
    const before = await this.rpc(
      () =>
        this.callOracle<string>('verify', [attestation, signature], receipt.blockNumber - 1, true),
      'simulating verify before the block',
    );
    if (before === ZeroAddress) {
      return {
        state: 'overtaken',
        reason: `nonces(user) passed ${attestation.nonce} in block ${receipt.blockNumber}, but not through this attestation`,
      };
    }
    const competitor = await this.earlierCompetitor(receipt, attestation.user);
    if (competitor !== undefined) return competitor;
    return accepted(receipt);
  }

  /**
   * Reads what `verify` returned inside a mined transaction, from the node's call tracer.
   * Returns undefined when the node offers no tracing (many public endpoints do not).
   */
  private async verifyResult(txHash: string): Promise<string | undefined> {
    if (this.traceAvailable === false) return undefined;
    let trace: { output?: unknown };
    try {
      trace = (await this.requireProvider().send('debug_traceTransaction', [
        txHash,
        { tracer: 'callTracer' },
      ])) as { output?: unknown };
    } catch (error) {
      if (
        /not found|not supported|does not exist|unsupported|not available|-32601|method/i.test(
          JSON.stringify((error as { info?: unknown }).info ?? '') + describeError(error),
        )
      ) {
        this.traceAvailable = false;
        return undefined;
      }
      throw new RetryableError(`tracing transaction ${txHash} failed: ${shortRpcError(error)}`, {
        cause: error,
      });
    }
    this.traceAvailable = true;
    if (typeof trace.output !== 'string' || !/^0x[0-9a-fA-F]{64}$/.test(trace.output))
      return undefined;
    return getAddress(`0x${trace.output.slice(-40)}`);
  }

  /**
   * Looks for a direct verify call for the same agent earlier in the block, which could have
   * taken the nonce instead of ours. With exactly one, its own simulation at the end of the
   * block before decides; with more, acceptance cannot be proven without a call trace.
   */
  private async earlierCompetitor(
    receipt: TransactionReceipt,
    user: string,
  ): Promise<Inspection | undefined> {
    const block = await this.rpc(
      () => this.requireProvider().getBlock(receipt.blockNumber, true),
      'reading the block',
    );
    if (block === null) return undefined;
    const oracle = this.requireOracle();
    const competitors: Array<{ att: unknown; sig: string; hash: string }> = [];
    for (const transaction of block.prefetchedTransactions) {
      if (transaction.index >= receipt.index) continue;
      if (transaction.to?.toLowerCase() !== this.options.oracleAddress.toLowerCase()) continue;
      let decoded: ReturnType<typeof oracle.interface.parseTransaction>;
      try {
        decoded = oracle.interface.parseTransaction({ data: transaction.data });
      } catch {
        continue;
      }
      if (decoded?.name !== 'verify') continue;
      const [att, sig] = decoded.args as unknown as [{ user: string }, string];
      if (att.user.toLowerCase() === user.toLowerCase())
        competitors.push({ att, sig, hash: transaction.hash });
    }
    if (competitors.length === 0) return undefined;

    const only = competitors.length === 1 ? competitors[0] : undefined;
    if (only !== undefined) {
      const result = await this.rpc(
        () =>
          this.callOracle<string>('verify', [only.att, only.sig], receipt.blockNumber - 1, true),
        'simulating an earlier verify call',
      );
      if (result === ZeroAddress) return undefined;
      return {
        state: 'overtaken',
        reason: `transaction ${only.hash}, earlier in block ${receipt.blockNumber}, attested for the same agent first`,
      };
    }
    return {
      state: 'in-flight',
      reason:
        `${competitors.length} other verify calls for this agent came earlier in block ${receipt.blockNumber}, so acceptance ` +
        'cannot be proven without debug_traceTransaction; use an RPC endpoint that offers it, or check the block by hand',
    };
  }

  /**
   * Signs and broadcasts a transaction. Only the account nonce and the signature are taken
   * in order, in a queue; recording and broadcasting run side by side, so that the state
   * writes of many transactions share one fsync. A node keeps a transaction that arrives
   * before its lower account nonce until the gap fills. The transaction is recorded before
   * its broadcast, so a crash right after it still leaves the hash to look for.
   */
  private async broadcast(
    attestation: Attestation,
    signature: string,
    context: DeliveryContext,
  ): Promise<TransactionRecord> {
    const provider = this.requireProvider();
    const data = this.requireOracle().interface.encodeFunctionData('verify', [
      attestation,
      signature,
    ]);
    const fields = await this.transactionFields(data);

    for (let attempt = 1; attempt <= 3; attempt += 1) {
      const record = await this.inOrder(() => this.signNext(fields));
      await context.recordTransaction(record);
      this.rememberTransaction(record);

      try {
        await provider.broadcastTransaction(record.rawTx);
        return record;
      } catch (error) {
        const kind = classifySendError(error);
        if (kind === 'already-known') return record;
        this.nextAccountNonce = undefined;
        if (kind === 'nonce-taken') {
          context.logger.warn(
            { accountNonce: record.accountNonce, err: describeError(error) },
            'account nonce already used; reading it from the chain again',
          );
          continue;
        }
        if (kind === 'insufficient-funds') {
          throw new RetryableError(
            `the signer account ${this.wallet.address} cannot pay for gas; fund it`,
            { cause: error },
          );
        }
        throw new RetryableError(`broadcasting the transaction failed: ${describeError(error)}`, {
          cause: error,
        });
      }
    }
    throw new RetryableError(
      'no free account nonce after three tries; another process may be sending from the signer account',
    );
  }

  private inOrder<T>(work: () => Promise<T>): Promise<T> {
    const queued = this.sendQueue.then(work);
    this.sendQueue = queued.catch(() => undefined);
    return queued;
  }

  /** Takes the next account nonce and signs the transaction with it. */
  private async signNext(fields: TransactionFields): Promise<TransactionRecord> {
    const accountNonce = await this.allocateAccountNonce();
    this.nextAccountNonce = accountNonce + 1;
    const rawTx = await this.wallet.signTransaction({ ...fields, nonce: accountNonce });
    return { txHash: keccak256(rawTx), rawTx, accountNonce };
  }

  private rememberTransaction(record: TransactionRecord): void {
    this.recentTransactions.set(record.accountNonce, record.rawTx);
    if (this.recentTransactions.size > MAX_RECENT_TRANSACTIONS) {
      this.recentTransactions.delete(Math.min(...this.recentTransactions.keys()));
    }
  }

  /** Returns the next account nonce, read from the chain (pending) at start and after any send error. */
  private async allocateAccountNonce(): Promise<number> {
    if (this.nextAccountNonce === undefined) {
      const provider = this.requireProvider();
      this.nextAccountNonce = await this.rpc(
        () => provider.getTransactionCount(this.wallet.address, 'pending'),
        'reading the account nonce',
      );
    }
    return this.nextAccountNonce;
  }

  /** Gas limit and fees for a `verify` call: the node's estimates, capped by the configuration. */
  private async transactionFields(data: string): Promise<TransactionFields> {
    const provider = this.requireProvider();
    const to = this.options.oracleAddress;
    const [gas, fees] = await Promise.all([
      this.rpc(
        () => provider.estimateGas({ from: this.wallet.address, to, data }),
        'estimating gas',
      ),
      this.rpc(() => provider.getFeeData(), 'reading fees'),
    ]);
    const gasLimit = (gas * 125n) / 100n;
    const base = { to, data, gasLimit, chainId: this.chainId };

    if (fees.maxFeePerGas === null) {
      return {
        ...base,
        type: 0,
        gasPrice: capped(fees.gasPrice ?? 0n, this.options.maxFeePerGasWei),
      };
    }
    const maxPriorityFeePerGas =
      this.options.priorityFeePerGasWei ?? fees.maxPriorityFeePerGas ?? 0n;
    const maxFeePerGas = capped(fees.maxFeePerGas, this.options.maxFeePerGasWei);
    return {
      ...base,
      type: 2,
      maxFeePerGas,
      maxPriorityFeePerGas:
        maxPriorityFeePerGas > maxFeePerGas ? maxFeePerGas : maxPriorityFeePerGas,
    };
  }

  /**
   * Polls for the receipt and its confirmations, for at most TELEMETRY_TX_TIMEOUT_MS. A
   * transaction that the node no longer has (dropped from the mempool, or removed by a
   * re-org) is broadcast again, the same signed bytes. A transaction not mined in time is
   * broadcast again before giving up this attempt.
   */
  private async waitForReceipt(
    tx: TransactionRecord,
    context: DeliveryContext,
  ): Promise<TransactionReceipt> {
    const provider = this.requireProvider();
    const giveUpAt = Date.now() + this.options.txTimeoutMs;
    let seenInBlock: number | undefined;
    let polls = 0;

    while (Date.now() < giveUpAt) {
      polls += 1;
      const receipt = await this.rpc(
        () => provider.getTransactionReceipt(tx.txHash),
        'reading a receipt',
      );
      if (receipt !== null) {
        seenInBlock = receipt.blockNumber;
        const head = await this.rpc(() => provider.getBlockNumber(), 'reading the block number');
        if (head - receipt.blockNumber + 1 >= this.options.confirmations) return receipt;
      } else if (seenInBlock !== undefined) {
        context.logger.warn(
          { txHash: tx.txHash, block: seenInBlock },
          'transaction left the chain in a re-org; broadcasting it again',
        );
        seenInBlock = undefined;
        await this.rebroadcastRecent(context);
        await this.rebroadcast(tx, context);
      } else if (polls % DROP_CHECK_EVERY_POLLS === 0) {
        const known = await this.rpc(
          () => provider.getTransaction(tx.txHash),
          'reading a transaction',
        );
        if (known === null) {
          context.logger.warn(
            { txHash: tx.txHash },
            'transaction unknown to the node (dropped or re-orged out); broadcasting it again',
          );
          await this.rebroadcastRecent(context);
          await this.rebroadcast(tx, context);
        }
      }
      await sleep(RECEIPT_POLL_MS, undefined, { signal: context.signal });
    }

    await this.rebroadcastRecent(context);
    await this.rebroadcast(tx, context);
    throw new RetryableError(
      `transaction ${tx.txHash} was not mined within ${this.options.txTimeoutMs} ms; broadcast it again`,
    );
  }

  /** Reads the balance for the metrics. A failed read only logs, because delivery does not need it. */
  private async refreshSignerBalance(context: DeliveryContext): Promise<void> {
    if (this.meter === undefined) return;
    try {
      this.meter.setSignerBalance(await this.signerBalance());
    } catch (error) {
      context.logger.warn(
        { signer: this.wallet.address, err: describeError(error) },
        'reading the signer balance failed; the balance metric keeps its last value',
      );
    }
  }

  /** Broadcasts again every recent transaction whose account nonce is not mined yet, lowest first. */
  private async rebroadcastRecent(context: DeliveryContext): Promise<void> {
    const mined = await this.rpc(
      () => this.requireProvider().getTransactionCount(this.wallet.address, 'latest'),
      'reading the account nonce',
    );
    const nonces = [...this.recentTransactions.keys()].sort((a, b) => a - b);
    for (const nonce of nonces) {
      if (nonce < mined) {
        this.recentTransactions.delete(nonce);
        continue;
      }
      const rawTx = this.recentTransactions.get(nonce);
      if (rawTx !== undefined)
        await this.rebroadcast({ txHash: keccak256(rawTx), rawTx, accountNonce: nonce }, context);
    }
  }

  private async rebroadcast(tx: TransactionRecord, context: DeliveryContext): Promise<void> {
    try {
      await this.requireProvider().broadcastTransaction(tx.rawTx);
    } catch (error) {
      const kind = classifySendError(error);
      if (kind !== 'already-known' && kind !== 'nonce-taken') {
        context.logger.warn(
          { txHash: tx.txHash, err: describeError(error) },
          'broadcasting the transaction again failed',
        );
      }
    }
  }

  private async callOracle<T>(
    method: string,
    args: unknown[],
    blockTag?: number,
    asCall = false,
  ): Promise<T> {
    const fn = this.requireOracle().getFunction(method);
    // `verify` is simulated from the signer's address; views need no sender.
    const overrides = { blockTag, ...(asCall ? { from: this.wallet.address } : {}) };
    return (await fn.staticCall(...args, overrides)) as T;
  }

  /** Reads `eth_chainId` with a plain request, so that an RPC that is down fails fast. */
  private async fetchChainId(): Promise<bigint> {
    let response: Response;
    try {
      response = await fetch(this.options.rpcUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'eth_chainId', params: [] }),
        signal: AbortSignal.timeout(this.options.requestTimeoutMs),
      });
    } catch (error) {
      const cause = (error as { cause?: { code?: string } }).cause?.code ?? describeError(error);
      throw new RetryableError(
        `the RPC endpoint ${redactUrl(this.options.rpcUrl)} is unreachable (${cause})`,
      );
    }
    const body = (await response.json().catch(() => ({}))) as { result?: string };
    if (!response.ok || typeof body.result !== 'string') {
      throw new RetryableError(
        `the RPC endpoint ${redactUrl(this.options.rpcUrl)} responded ${response.status} to eth_chainId`,
      );
    }
    return BigInt(body.result);
  }

  /** Runs one RPC call and turns any failure into a RetryableError naming the step. */
  private async rpc<T>(call: () => Promise<T>, step: string): Promise<T> {
    try {
      return await call();
    } catch (error) {
      if (error instanceof RetryableError || error instanceof RejectedError) throw error;
      throw new RetryableError(`${step} failed: ${shortRpcError(error)}`, { cause: error });
    }
  }

  private requireProvider(): JsonRpcProvider {
    if (this.provider === undefined)
      throw new RetryableError('not connected to the RPC endpoint yet');
    return this.provider;
  }

  private requireOracle(): Contract {
    if (this.oracle === undefined)
      throw new RetryableError('not connected to the RPC endpoint yet');
    return this.oracle;
  }
}

/** A transaction request without its account nonce, which is assigned in the send queue. */
interface TransactionFields {
  to: string;
  data: string;
  gasLimit: bigint;
  chainId: bigint | undefined;
  type: number;
  gasPrice?: bigint;
  maxFeePerGas?: bigint;
  maxPriorityFeePerGas?: bigint;
}

type SendErrorKind = 'already-known' | 'nonce-taken' | 'insufficient-funds' | 'other';

/**
 * Classifies a broadcast error. ethers 6 maps "nonce too low" to NONCE_EXPIRED and
 * "replacement transaction underpriced" to REPLACEMENT_UNDERPRICED; "already known" (geth,
 * anvil) has no code, so its text is matched here and nowhere else.
 */
export function classifySendError(error: unknown): SendErrorKind {
  if (isError(error, 'NONCE_EXPIRED') || isError(error, 'REPLACEMENT_UNDERPRICED'))
    return 'nonce-taken';
  if (isError(error, 'INSUFFICIENT_FUNDS')) return 'insufficient-funds';
  const text = JSON.stringify((error as { info?: unknown })?.info ?? '') + describeError(error);
  if (/already known|already imported|known transaction/i.test(text)) return 'already-known';
  if (/nonce too low/i.test(text)) return 'nonce-taken';
  return 'other';
}

function accepted(receipt: TransactionReceipt): Inspection {
  return {
    state: 'accepted',
    acceptance: {
      reference: receipt.hash,
      details: { blockNumber: receipt.blockNumber, gasUsed: receipt.gasUsed.toString() },
    },
  };
}

function capped(value: bigint, cap: bigint | undefined): bigint {
  return cap !== undefined && value > cap ? cap : value;
}

/** ethers error messages embed the whole request; keep the first sentence. */
function shortRpcError(error: unknown): string {
  const code = (error as { code?: string }).code;
  const message = describeError(error).split(' (')[0] ?? '';
  return code === undefined ? message : `${code}: ${message}`;
}

/** Hides credentials that RPC providers put in the URL's user info. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.username !== '' || parsed.password !== '') {
      parsed.username = '***';
      parsed.password = '';
    }
    return parsed.toString();
  } catch {
    return '(invalid URL)';
  }
}
