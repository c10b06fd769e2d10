import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  AbiCoder,
  Signature,
  Wallet,
  concat,
  getAddress,
  keccak256,
  recoverAddress,
  toUtf8Bytes,
} from 'ethers';
import fc from 'fast-check';
import type { Attestation, MappingSettings } from '../../apps/operator/attestation';
import {
  AttestationSigner,
  attestationDigest,
  attestationDomain,
  attestationFromJson,
  attestationToJson,
  figuresFingerprint,
  mapFigures,
  signAttestation,
} from '../../apps/operator/attestation';
import type { Fraction } from '../../apps/operator/decimal';
import type { JobLog } from '../../apps/operator/energy-log';

const ATTESTATION_TYPE =
  'EnergyAttestation(uint256 jobId,address user,int256 energy,uint256 degeneracy,uint256 epochId,' +
  'uint8 role,uint256 nonce,uint256 deadline,uint256 uPre,uint256 uPost,uint256 value)';
const DOMAIN_TYPE =
  'EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)';

const UINT256_MAX = (1n << 256n) - 1n;
const INT256_MAX = (1n << 255n) - 1n;
const INT256_MIN = -(1n << 255n);

const ORACLE = '0x5FbDB2315678afecb367f032d93F642f64180aa3';
const CHAIN_ID = 31337n;
const wallet = new Wallet(`0x${'42'.repeat(32)}`);

const SETTINGS: MappingSettings = {
  energyScaling: '1',
  valueScaling: '1000000',
  epochDurationSec: 86400,
  role: 2,
};

function sampleAttestation(overrides: Partial<Attestation> = {}): Attestation {
  return {
    jobId: 1004n,
    user: '0x4D83E0BCc1CaD3eB9a321da3Ae0e30680F4ff7E8',
    energy: 20n,
    degeneracy: 3n,
    epochId: 20791n,
    role: 2,
    nonce: 7n,
    deadline: 1_796_417_425n,
    uPre: 20n,
    uPost: 20n,
    value: 75_399_786n,
    ...overrides,
  };
}

/** Builds the EIP-712 digest from its definition: type hashes, ABI encoding, 0x1901 prefix. */
function digestByHand(
  chainId: bigint,
  verifyingContract: string,
  attestation: Attestation,
): string {
  const coder = AbiCoder.defaultAbiCoder();

  const domainSeparator = keccak256(
    coder.encode(
      ['bytes32', 'bytes32', 'bytes32', 'uint256', 'address'],
      [
        keccak256(toUtf8Bytes(DOMAIN_TYPE)),
        keccak256(toUtf8Bytes('EnergyOracle')),
        keccak256(toUtf8Bytes('1')),
        chainId,
        verifyingContract,
      ],
    ),
  );

  const structHash = keccak256(
    coder.encode(
      [
        'bytes32',
        'uint256',
        'address',
        'int256',
        'uint256',
        'uint256',
        'uint8',
        'uint256',
        'uint256',
        'uint256',
        'uint256',
        'uint256',
      ],
      [
        keccak256(toUtf8Bytes(ATTESTATION_TYPE)),
        attestation.jobId,
        attestation.user,
        attestation.energy,
        attestation.degeneracy,
        attestation.epochId,
        attestation.role,
        attestation.nonce,
        attestation.deadline,
        attestation.uPre,
        attestation.uPost,
        attestation.value,
      ],
    ),
  );

  return keccak256(concat(['0x1901', domainSeparator, structHash]));
}

function fraction(numerator: bigint, denominator = 1n): Fraction {
  return { numerator, denominator };
}

function jobLog(
  overrides: Partial<JobLog['figures']> = {},
  lastUpdatedMs = 1_796_413_824_985,
): JobLog {
  return {
    agent: '0x4D83E0BCc1CaD3eB9a321da3Ae0e30680F4ff7E8',
    jobId: 1004n,
    lastUpdatedMs,
    summaryComputed: false,
    figures: {
      totalCpuTimeMs: fraction(20268n, 1000n),
      totalGpuTimeMs: fraction(0n),
      energyScore: fraction(20268n, 1000n),
      averageEfficiency: fraction(7539978551926394n, 100000000000000n),
      runs: 3n,
      ...overrides,
    },
  };
}

function mapOk(log: JobLog, settings = SETTINGS): Exclude<ReturnType<typeof mapFigures>, string> {
  const figures = mapFigures(log, settings);
  if (typeof figures === 'string') assert.fail(`expected figures, got: ${figures}`);
  return figures;
}

describe('EIP-712 digest', () => {
  const domain = attestationDomain(CHAIN_ID, ORACLE);

  test('domain has oracle name and version', () => {
    assert.equal(domain.name, 'EnergyOracle');
    assert.equal(domain.version, '1');
    assert.equal(domain.chainId, CHAIN_ID);
    assert.equal(domain.verifyingContract, ORACLE);
  });

  const cases: Array<[string, Attestation]> = [
    ['sample attestation', sampleAttestation()],
    ['negative energy', sampleAttestation({ energy: -12345n })],
    ['int256 minimum energy', sampleAttestation({ energy: INT256_MIN })],
    [
      'maximum values',
      sampleAttestation({
        jobId: UINT256_MAX,
        energy: INT256_MAX,
        degeneracy: UINT256_MAX,
        epochId: UINT256_MAX,
        role: 255,
        nonce: UINT256_MAX,
        deadline: UINT256_MAX,
        uPre: UINT256_MAX,
        uPost: UINT256_MAX,
        value: UINT256_MAX,
      }),
    ],
    ['zero values', sampleAttestation({ jobId: 0n, energy: 0n, role: 0, nonce: 0n, value: 0n })],
  ];
  for (const [name, attestation] of cases) {
    test(`digest of ${name} matches`, () => {
      assert.equal(
        attestationDigest(domain, attestation),
        digestByHand(CHAIN_ID, ORACLE, attestation),
      );
    });
  }

  test('digest depends on chain id', () => {
    const other = attestationDomain(1n, ORACLE);
    assert.notEqual(
      attestationDigest(other, sampleAttestation()),
      digestByHand(CHAIN_ID, ORACLE, sampleAttestation()),
    );
    assert.equal(
      attestationDigest(other, sampleAttestation()),
      digestByHand(1n, ORACLE, sampleAttestation()),
    );
  });

  test('digest matches for random attestations', () => {
    const uint = fc.bigInt({ min: 0n, max: UINT256_MAX });
    const attestation = fc.record({
      jobId: uint,
      user: fc
        .uint8Array({ minLength: 20, maxLength: 20 })
        .map((bytes) => getAddress(`0x${Buffer.from(bytes).toString('hex')}`)),
      energy: fc.bigInt({ min: INT256_MIN, max: INT256_MAX }),
      degeneracy: uint,
      epochId: uint,
      role: fc.integer({ min: 0, max: 255 }),
      nonce: uint,
      deadline: uint,
      uPre: uint,
      uPost: uint,
      value: uint,
    });
    fc.assert(
      fc.property(attestation, fc.bigInt({ min: 1n, max: UINT256_MAX }), (value, chainId) => {
        const randomDomain = attestationDomain(chainId, ORACLE);
        assert.equal(attestationDigest(randomDomain, value), digestByHand(chainId, ORACLE, value));
      }),
      { numRuns: 200 },
    );
  });
});

describe('signAttestation', () => {
  const domain = attestationDomain(CHAIN_ID, ORACLE);

  test('signature recovers to signer', async () => {
    const attestation = sampleAttestation();
    const signature = await signAttestation(wallet, domain, attestation);
    const digest = digestByHand(CHAIN_ID, ORACLE, attestation);
    assert.equal(recoverAddress(digest, signature), wallet.address);
  });

  test('signature is 65 bytes', async () => {
    const signature = await signAttestation(wallet, domain, sampleAttestation());
    assert.match(signature, /^0x[0-9a-f]{130}$/);
    assert.ok([27, 28].includes(Signature.from(signature).v));
  });

  test('other attestation recovers elsewhere', async () => {
    const signature = await signAttestation(wallet, domain, sampleAttestation());
    const otherDigest = digestByHand(CHAIN_ID, ORACLE, sampleAttestation({ nonce: 8n }));
    assert.notEqual(recoverAddress(otherDigest, signature), wallet.address);
  });
});

describe('AttestationSigner', () => {
  const domain = attestationDomain(CHAIN_ID, ORACLE);
  const signer = new AttestationSigner(wallet, domain);

  test('digest matches hand-built digest', () => {
    const attestation = sampleAttestation();
    assert.equal(signer.sign(attestation).digest, digestByHand(CHAIN_ID, ORACLE, attestation));
  });

  test('signature matches signTypedData', async () => {
    const attestation = sampleAttestation({ nonce: 42n });
    const expected = await signAttestation(wallet, domain, attestation);
    assert.equal(signer.sign(attestation).signature, expected);
  });

  test('signature recovers to signer', () => {
    const attestation = sampleAttestation({ energy: -5n });
    const { signature, digest } = signer.sign(attestation);
    assert.equal(recoverAddress(digest, signature), wallet.address);
  });
});

describe('attestation JSON', () => {
  test('JSON round trip keeps values', () => {
    const attestation = sampleAttestation({ jobId: UINT256_MAX, energy: -5n, role: 255 });
    assert.deepEqual(attestationFromJson(attestationToJson(attestation)), attestation);
  });

  test('JSON fields are decimal strings', () => {
    const json = attestationToJson(sampleAttestation({ jobId: UINT256_MAX, energy: -5n }));
    assert.equal(json.jobId, UINT256_MAX.toString());
    assert.equal(json.energy, '-5');
    assert.equal(json.role, '2');
    assert.equal(json.user, '0x4D83E0BCc1CaD3eB9a321da3Ae0e30680F4ff7E8');
    for (const [name, value] of Object.entries(json)) assert.equal(typeof value, 'string', name);
  });

  test('JSON round trip for random values', () => {
    const uint = fc.bigInt({ min: 0n, max: UINT256_MAX });
    fc.assert(
      fc.property(
        uint,
        fc.bigInt({ min: INT256_MIN, max: INT256_MAX }),
        uint,
        (jobId, energy, value) => {
          const attestation = sampleAttestation({ jobId, energy, value });
          assert.deepEqual(attestationFromJson(attestationToJson(attestation)), attestation);
        },
      ),
      { numRuns: 200 },
    );
  });

  test('missing JSON field throws', () => {
    const { nonce: _nonce, ...json } = attestationToJson(sampleAttestation());
    assert.throws(() => attestationFromJson(json), /nonce is missing/);
  });
});

describe('mapFigures', () => {
  test('sample figures map', () => {
    assert.deepEqual(mapOk(jobLog()), {
      jobId: 1004n,
      user: '0x4D83E0BCc1CaD3eB9a321da3Ae0e30680F4ff7E8',
      energy: 20n,
      degeneracy: 3n,
      epochId: 20791n,
      role: 2,
      uPre: 20n,
      uPost: 20n,
      value: 75_399_786n,
    });
  });

  test('halves round up', () => {
    const figures = mapOk(
      jobLog({
        totalCpuTimeMs: fraction(25n, 10n),
        totalGpuTimeMs: fraction(1n),
        energyScore: fraction(5n, 2n),
        averageEfficiency: fraction(5n, 10_000_000n),
      }),
    );
    assert.equal(figures.energy, 3n);
    assert.equal(figures.uPre, 3n);
    assert.equal(figures.uPost, 4n);
    assert.equal(figures.value, 1n);
  });

  test('just below half rounds down', () => {
    const figures = mapOk(jobLog({ energyScore: fraction(2_499_999_999n, 1_000_000_000n) }));
    assert.equal(figures.energy, 2n);
  });

  test('uPost adds GPU time before rounding', () => {
    const figures = mapOk(
      jobLog({ totalCpuTimeMs: fraction(14n, 10n), totalGpuTimeMs: fraction(14n, 10n) }),
    );
    assert.equal(figures.uPre, 1n);
    assert.equal(figures.uPost, 3n);
  });

  test('scaling factors apply exactly', () => {
    const settings = { ...SETTINGS, energyScaling: '0.001', valueScaling: '1e3' };
    const figures = mapOk(
      jobLog({ energyScore: fraction(1500n), averageEfficiency: fraction(12345n, 10000n) }),
      settings,
    );
    assert.equal(figures.energy, 2n);
    assert.equal(figures.value, 1235n);
  });

  test('degeneracy is at least one', () => {
    assert.equal(mapOk(jobLog({ runs: 0n })).degeneracy, 1n);
    assert.equal(mapOk(jobLog({ runs: 1n })).degeneracy, 1n);
    assert.equal(mapOk(jobLog({ runs: 7n })).degeneracy, 7n);
  });

  test('epochId uses epoch duration', () => {
    const hourly = { ...SETTINGS, epochDurationSec: 3600 };
    assert.equal(mapOk(jobLog({}, 7_199_999), hourly).epochId, 1n);
    assert.equal(mapOk(jobLog({}, 7_200_000), hourly).epochId, 2n);
    assert.equal(mapOk(jobLog({}, 0)).epochId, 0n);
  });

  test('epoch before 1970 rejected', () => {
    const reason = mapFigures(jobLog({}, -1), SETTINGS);
    assert.equal(typeof reason, 'string');
    assert.match(String(reason), /epochId -1 is negative/);
  });

  test('role comes from settings', () => {
    assert.equal(mapOk(jobLog(), { ...SETTINGS, role: 0 }).role, 0);
    assert.equal(mapOk(jobLog(), { ...SETTINGS, role: 255 }).role, 255);
  });

  test('energy at int256 max accepted', () => {
    assert.equal(mapOk(jobLog({ energyScore: fraction(INT256_MAX) })).energy, INT256_MAX);
  });

  test('energy above int256 rejected', () => {
    const reason = mapFigures(jobLog({ energyScore: fraction(INT256_MAX + 1n) }), SETTINGS);
    assert.equal(typeof reason, 'string');
    assert.match(String(reason), /energy .* does not fit in int256/);
  });

  test('energy overflow after scaling rejected', () => {
    const settings = { ...SETTINGS, energyScaling: '1000' };
    const reason = mapFigures(jobLog({ energyScore: fraction(INT256_MAX / 999n) }), settings);
    assert.match(String(reason), /does not fit in int256/);
  });

  const uintFields: Array<[string, Partial<JobLog['figures']>]> = [
    ['uPre', { totalCpuTimeMs: fraction(UINT256_MAX + 1n) }],
    ['uPost', { totalGpuTimeMs: fraction(UINT256_MAX) }],
    ['value', { averageEfficiency: fraction(UINT256_MAX) }],
    ['degeneracy', { runs: UINT256_MAX + 1n }],
  ];
  for (const [name, figures] of uintFields) {
    test(`${name} above uint256 rejected`, () => {
      const reason = mapFigures(jobLog(figures), SETTINGS);
      assert.equal(typeof reason, 'string');
      assert.match(String(reason), new RegExp(`^${name} .* does not fit in uint256`));
    });
  }
});

describe('figuresFingerprint', () => {
  const figures = mapOk(jobLog());

  test('fingerprint is 16 hex digits', () => {
    assert.match(figuresFingerprint(figures), /^[0-9a-f]{16}$/);
  });

  test('fingerprint is stable', () => {
    assert.equal(figuresFingerprint(figures), figuresFingerprint({ ...figures }));
  });

  const changes: Array<Partial<typeof figures>> = [
    { jobId: 1005n },
    { user: getAddress('0x6ed55d052b4b32a70de777219dd6920084a8b3b6') },
    { energy: 21n },
    { degeneracy: 4n },
    { epochId: 20792n },
    { role: 3 },
    { uPre: 21n },
    { uPost: 21n },
    { value: 75_399_787n },
  ];
  for (const change of changes) {
    test(`fingerprint changes with ${Object.keys(change).join()}`, () => {
      assert.notEqual(figuresFingerprint({ ...figures, ...change }), figuresFingerprint(figures));
    });
  }
});
