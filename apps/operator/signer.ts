import fs from 'node:fs';
import { Wallet } from 'ethers';
import type { SignerSource } from './config';
import { ConfigError } from './errors';

/** Builds the signing wallet from the configured source. The key itself is never logged. */
export async function loadSigner(source: SignerSource): Promise<Wallet> {
  if (source.kind !== 'keystore') return new Wallet(source.key.reveal());

  const json = fs.readFileSync(source.path, 'utf8');
  try {
    const wallet = await Wallet.fromEncryptedJson(json, source.password.reveal());
    return new Wallet(wallet.privateKey);
  } catch (error) {
    const reason =
      error instanceof Error && /password/i.test(error.message)
        ? 'the password is wrong'
        : 'it is not a valid keystore';
    throw new ConfigError([
      `ENERGY_ORACLE_KEYSTORE_FILE ${source.path} cannot be decrypted: ${reason}`,
    ]);
  }
}

/** Names the key source for the start line, without the key. */
export function describeSignerSource(source: SignerSource): string {
  switch (source.kind) {
    case 'variable':
      return 'ENERGY_ORACLE_SIGNER_KEY';
    case 'file':
      return `ENERGY_ORACLE_SIGNER_KEY_FILE (${source.path})`;
    case 'keystore':
      return `ENERGY_ORACLE_KEYSTORE_FILE (${source.path})`;
  }
}
