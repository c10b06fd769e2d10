import type { StateStore } from './state';

/**
 * Attestation nonces are per user (agent) and must rise strictly. A new revision takes the
 * next nonce above everything this daemon assigned to the user and, in contract mode,
 * above what the contract has already accepted (another operator may attest for the same
 * agent).
 */
export interface NonceProvider {
  next(user: string): Promise<bigint>;
}

/** Reads `nonces(user)` from the contract. */
export interface ContractNonceReader {
  acceptedNonce(user: string): Promise<bigint>;
}

export class ContractNonceProvider implements NonceProvider {
  constructor(
    private readonly reader: ContractNonceReader,
    private readonly state: StateStore,
  ) {}

  async next(user: string): Promise<bigint> {
    const onChain = await this.reader.acceptedNonce(user);
    const assigned = this.state.lastNonce(user);
    return (onChain > assigned ? onChain : assigned) + 1n;
  }
}

/** API mode reads no chain: the state file is the only record, starting from 0. */
export class StateNonceProvider implements NonceProvider {
  constructor(private readonly state: StateStore) {}

  next(user: string): Promise<bigint> {
    return Promise.resolve(this.state.lastNonce(user) + 1n);
  }
}
