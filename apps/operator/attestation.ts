import { createHash } from 'node:crypto';
import type { TypedDataDomain, Wallet } from 'ethers';
import { Signature, TypedDataEncoder, concat, keccak256 } from 'ethers';
import type { Fraction } from './decimal';
import { add, multiply, parseDecimal, roundHalfUp } from './decimal';
import type { JobLog } from './energy-log';

/**
 * The attestation struct, its EIP-712 typed data and its signature. Pure apart from the
 * signing key: no file, network or clock access.
 */

export interface Attestation {
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

/** The fields that come from the log; nonce and deadline are added when the attestation is sent. */
export type AttestationFigures = Omit<Attestation, 'nonce' | 'deadline'>;

/** The struct's fields in signature order; the order is part of the EIP-712 type hash. */
export const ATTESTATION_TYPES = {
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

export interface MappingSettings {
  energyScaling: string;
  valueScaling: string;
  epochDurationSec: number;
  role: number;
}

const INT256_MAX = (1n << 255n) - 1n;
const UINT256_MAX = (1n << 256n) - 1n;

export function attestationDomain(chainId: bigint, oracleAddress: string): TypedDataDomain {
  return { name: 'EnergyOracle', version: '1', chainId, verifyingContract: oracleAddress };
}

/**
 * Maps a job log to the attestation's figures. Every product is computed exactly from the
 * log's decimal text and rounded half up. Returns a reason instead when a value does not
 * fit its Solidity type.
 */
export function mapFigures(log: JobLog, settings: MappingSettings): AttestationFigures | string {
  const energyScaling = mustParse(settings.energyScaling);
  const valueScaling = mustParse(settings.valueScaling);
  const { figures } = log;

  const energy = roundHalfUp(multiply(figures.energyScore, energyScaling));
  const uPre = roundHalfUp(figures.totalCpuTimeMs);
  const uPost = roundHalfUp(add(figures.totalCpuTimeMs, figures.totalGpuTimeMs));
  const value = roundHalfUp(multiply(figures.averageEfficiency, valueScaling));
  const degeneracy = figures.runs > 1n ? figures.runs : 1n;
  const epochId = BigInt(Math.floor(log.lastUpdatedMs / 1000 / settings.epochDurationSec));

  if (energy > INT256_MAX) return `energy ${energy} does not fit in int256`;
  if (epochId < 0n) return `epochId ${epochId} is negative (lastUpdated before 1970)`;
  for (const [name, amount] of Object.entries({ degeneracy, uPre, uPost, value })) {
    if (amount > UINT256_MAX) return `${name} ${amount} does not fit in uint256`;
  }

  return {
    jobId: log.jobId,
    user: log.agent,
    energy,
    degeneracy,
    epochId,
    role: settings.role,
    uPre,
    uPost,
    value,
  };
}

function mustParse(text: string): Fraction {
  const parsed = parseDecimal(text);
  if (parsed === undefined) throw new RangeError(`scaling factor ${text} is not a decimal number`);
  return parsed;
}

/** Hashes the figures, to notice a log that changed without a new lastUpdated. */
export function figuresFingerprint(figures: AttestationFigures): string {
  const text = [
    figures.jobId,
    figures.user,
    figures.energy,
    figures.degeneracy,
    figures.epochId,
    figures.role,
    figures.uPre,
    figures.uPost,
    figures.value,
  ].join('|');
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

export function attestationDigest(domain: TypedDataDomain, attestation: Attestation): string {
  return TypedDataEncoder.hash(domain, ATTESTATION_TYPES, attestation);
}

/** Signs the attestation with EIP-712 and returns the 65-byte signature as hex. */
export async function signAttestation(
  wallet: Wallet,
  domain: TypedDataDomain,
  attestation: Attestation,
): Promise<string> {
  const signature = await wallet.signTypedData(domain, ATTESTATION_TYPES, attestation);
  return Signature.from(signature).serialized;
}

/**
 * Signs attestations for one domain. The domain separator and the struct encoder are built
 * once, and each attestation is hashed once for both its digest and its signature: hashing
 * and signing are most of the daemon's CPU time when a backlog drains.
 */
export class AttestationSigner {
  private readonly encoder = TypedDataEncoder.from(ATTESTATION_TYPES);
  private readonly domainSeparator: string;

  constructor(
    private readonly wallet: Wallet,
    readonly domain: TypedDataDomain,
  ) {
    this.domainSeparator = TypedDataEncoder.hashDomain(domain);
  }

  sign(attestation: Attestation): { signature: string; digest: string } {
    const structHash = this.encoder.hash(attestation);
    const digest = keccak256(concat(['0x1901', this.domainSeparator, structHash]));
    return { signature: this.wallet.signingKey.sign(digest).serialized, digest };
  }
}

/** Converts the attestation to decimal strings, the form of the API body and the state file. */
export function attestationToJson(attestation: Attestation): Record<keyof Attestation, string> {
  return {
    jobId: attestation.jobId.toString(),
    user: attestation.user,
    energy: attestation.energy.toString(),
    degeneracy: attestation.degeneracy.toString(),
    epochId: attestation.epochId.toString(),
    role: attestation.role.toString(),
    nonce: attestation.nonce.toString(),
    deadline: attestation.deadline.toString(),
    uPre: attestation.uPre.toString(),
    uPost: attestation.uPost.toString(),
    value: attestation.value.toString(),
  };
}

export function attestationFromJson(json: Record<string, string>): Attestation {
  const field = (name: keyof Attestation): string => {
    const value = json[name];
    if (value === undefined) throw new Error(`attestation field ${name} is missing`);
    return value;
  };
  return {
    jobId: BigInt(field('jobId')),
    user: field('user'),
    energy: BigInt(field('energy')),
    degeneracy: BigInt(field('degeneracy')),
    epochId: BigInt(field('epochId')),
    role: Number(field('role')),
    nonce: BigInt(field('nonce')),
    deadline: BigInt(field('deadline')),
    uPre: BigInt(field('uPre')),
    uPost: BigInt(field('uPost')),
    value: BigInt(field('value')),
  };
}
