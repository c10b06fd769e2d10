import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { getAddress } from 'ethers';
import fc from 'fast-check';
import { parse } from 'lossless-json';
import type { AttestationFigures, MappingSettings } from '../../apps/operator/attestation';
import { mapFigures } from '../../apps/operator/attestation';
import type { JobLog, LogLocation, ParseOutcome, SkipCode } from '../../apps/operator/energy-log';
import {
  MAX_NESTING_DEPTH,
  agentDirName,
  parseEnergyLog,
  parseJobId,
} from '../../apps/operator/energy-log';
import { roundHalfUp, scaled, shift, sum } from '../support/exact-decimal';

const SAMPLES = path.join(__dirname, '../fixtures/samples');
const ENS_FOLDER = 'research-agent_agent_agi_eth';
const AGENT = '0x4D83E0BCc1CaD3eB9a321da3Ae0e30680F4ff7E8';
const NOW_MS = Date.parse('2026-12-05T00:00:00.000Z');
const DAY_MS = 86_400_000n;
const UINT256_MAX = (1n << 256n) - 1n;
const INT256_MIN = -(1n << 255n);
const INT256_MAX = (1n << 255n) - 1n;

const SETTINGS: MappingSettings = {
  energyScaling: '1',
  valueScaling: '1000000',
  epochDurationSec: 86400,
  role: 2,
};

const SKIP_CODES: ReadonlySet<SkipCode> = new Set<SkipCode>([
  'empty',
  'invalid-json',
  'not-an-object',
  'invalid-job-id',
  'job-id-mismatch',
  'invalid-agent',
  'agent-mismatch',
  'invalid-number',
  'invalid-time',
  'future-time',
  'no-figures',
  'too-large',
  'not-a-log-file',
]);

/** A sample log with every number kept as its decimal text. */
interface SampleText {
  jobId: string;
  agent: string;
  stages: Array<{
    cpuTimeMs: string;
    gpuTimeMs: string;
    efficiencyScore: string;
    timestamp: string;
  }>;
  summary: {
    totalCpuTimeMs: string;
    totalGpuTimeMs: string;
    energyScore: string;
    averageEfficiency: string;
    runs: string;
    lastUpdated: string;
  };
}

interface Sample {
  agentDir: string;
  fileName: string;
  text: string;
}

function readSamples(): Sample[] {
  const samples: Sample[] = [];
  for (const agentDir of fs.readdirSync(SAMPLES).sort()) {
    const folder = path.join(SAMPLES, agentDir);
    if (!fs.statSync(folder).isDirectory()) continue;
    for (const fileName of fs.readdirSync(folder).sort()) {
      samples.push({
        agentDir,
        fileName,
        text: fs.readFileSync(path.join(folder, fileName), 'utf8'),
      });
    }
  }
  return samples;
}

/** Parses with every number as its text, so that no value passes through a double. */
function readNumbersAsText(text: string): SampleText {
  return parse(text, null, (value: string) => value) as SampleText;
}

function max(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}

/** Computes the attestation figures of a sample from its summary, without the daemon's code. */
function expectedFromSummary(sample: Sample): AttestationFigures {
  const log = readNumbersAsText(sample.text);
  const summary = log.summary;
  return {
    jobId: BigInt(sample.fileName.replace(/\.json$/, '')),
    user: getAddress(sample.agentDir.toLowerCase()),
    energy: roundHalfUp(scaled(summary.energyScore)),
    degeneracy: max(1n, BigInt(summary.runs)),
    epochId: BigInt(Date.parse(summary.lastUpdated)) / DAY_MS,
    role: 2,
    uPre: roundHalfUp(scaled(summary.totalCpuTimeMs)),
    uPost: roundHalfUp(sum([scaled(summary.totalCpuTimeMs), scaled(summary.totalGpuTimeMs)])),
    value: roundHalfUp(shift(scaled(summary.averageEfficiency), 6)),
  };
}

function parseOk(location: LogLocation, text: string): JobLog {
  const outcome = parseEnergyLog(location, text, NOW_MS);
  if (!outcome.ok)
    assert.fail(`expected a log, got skip ${outcome.skip.code}: ${outcome.skip.reason}`);
  return outcome.log;
}

function mapOk(log: JobLog): AttestationFigures {
  const figures = mapFigures(log, SETTINGS);
  assert.ok(typeof figures !== 'string', `expected figures, got ${String(figures)}`);
  return figures;
}

function sampleText(agentDir: string, fileName: string): string {
  return fs.readFileSync(path.join(SAMPLES, agentDir, fileName), 'utf8');
}

/** Replaces the top-level `"jobId": "1004"` (the first one in the file) with `replacement`. */
function withJobId(text: string, replacement: string): string {
  const original = '"jobId": "1004"';
  assert.ok(text.includes(original));
  return text.replace(original, `"jobId": ${replacement}`);
}

describe('sample logs', () => {
  const samples = readSamples();

  test('samples are all present', () => {
    assert.equal(samples.length, 16);
  });

  for (const sample of samples.filter((entry) => entry.agentDir !== ENS_FOLDER)) {
    test(`sample ${sample.agentDir.slice(0, 6)}/${sample.fileName} maps exactly`, () => {
      const log = parseOk(sample, sample.text);
      const figures = mapOk(log);
      const expected = expectedFromSummary(sample);

      assert.equal(log.summaryComputed, false);
      assert.equal(figures.jobId, expected.jobId);
      assert.equal(figures.user, expected.user);
      assert.equal(figures.user, sample.agentDir);
      assert.equal(figures.energy, expected.energy);
      assert.equal(figures.degeneracy, expected.degeneracy);
      assert.equal(figures.epochId, expected.epochId);
      assert.equal(figures.role, expected.role);
      assert.equal(figures.uPre, expected.uPre);
      assert.equal(figures.uPost, expected.uPost);
      assert.equal(figures.value, expected.value);
    });
  }

  // Worked out by hand from the summaries: 2026-12-04 is day 20791 after 1970-01-01.
  const handComputed: Array<[string, string, AttestationFigures]> = [
    [
      '0x6ED55d052B4b32a70dE777219dD6920084A8B3b6',
      '1000.json',
      {
        jobId: 1000n,
        user: '0x6ED55d052B4b32a70dE777219dD6920084A8B3b6',
        energy: 32n,
        degeneracy: 3n,
        epochId: 20791n,
        role: 2,
        uPre: 32n,
        uPost: 32n,
        value: 52300979n,
      },
    ],
    [
      '0x6ED55d052B4b32a70dE777219dD6920084A8B3b6',
      '1001.json',
      {
        jobId: 1001n,
        user: '0x6ED55d052B4b32a70dE777219dD6920084A8B3b6',
        energy: 50n,
        degeneracy: 5n,
        epochId: 20791n,
        role: 2,
        uPre: 50n,
        uPost: 50n,
        value: 68162098n,
      },
    ],
    [
      AGENT,
      '1004.json',
      {
        jobId: 1004n,
        user: AGENT,
        energy: 20n,
        degeneracy: 3n,
        epochId: 20791n,
        role: 2,
        uPre: 20n,
        uPost: 20n,
        value: 75399786n,
      },
    ],
    [
      '0xE02aAaF5AEF2A2EEb8B0d87d1328c87680746667',
      '1011.json',
      {
        jobId: 1011n,
        user: '0xE02aAaF5AEF2A2EEb8B0d87d1328c87680746667',
        energy: 36n,
        degeneracy: 4n,
        epochId: 20791n,
        role: 2,
        uPre: 36n,
        uPost: 36n,
        value: 65044885n,
      },
    ],
  ];
  for (const [agentDir, fileName, expected] of handComputed) {
    test(`sample ${fileName} matches hand values`, () => {
      const figures = mapOk(parseOk({ agentDir, fileName }, sampleText(agentDir, fileName)));
      assert.deepEqual(figures, expected);
    });
  }

  test('ENS agent folder is skipped', () => {
    const ensSamples = samples.filter((entry) => entry.agentDir === ENS_FOLDER);
    assert.equal(ensSamples.length, 4);
    for (const sample of ensSamples) {
      const outcome = parseEnergyLog(sample, sample.text, NOW_MS);
      assert.ok(!outcome.ok, `${sample.fileName} was accepted`);
      assert.equal(outcome.skip.code, 'invalid-agent');
      assert.match(outcome.skip.reason, /research-agent\.agent\.agi\.eth/);
      assert.match(outcome.skip.reason, /not an 0x address/);
      assert.equal(outcome.skip.transient, false);
    }
  });
});

describe('job id', () => {
  const text = sampleText(AGENT, '1004.json');

  test('jobId beyond 2^53 as number', () => {
    const id = '9007199254740993';
    const log = parseOk({ agentDir: AGENT, fileName: `${id}.json` }, withJobId(text, id));
    assert.equal(log.jobId, 9007199254740993n);
  });

  test('jobId beyond 2^64 as string', () => {
    const id = '18446744073709551617';
    const log = parseOk({ agentDir: AGENT, fileName: `${id}.json` }, withJobId(text, `"${id}"`));
    assert.equal(log.jobId, 18446744073709551617n);
    assert.equal(mapOk(log).jobId, 18446744073709551617n);
  });

  test('jobId as 0x hex', () => {
    const log = parseOk({ agentDir: AGENT, fileName: '1004.json' }, withJobId(text, '"0x3EC"'));
    assert.equal(log.jobId, 1004n);
  });

  test('jobId from hex file name', () => {
    const log = parseOk({ agentDir: AGENT, fileName: '0x3ec.json' }, text);
    assert.equal(log.jobId, 1004n);
  });

  test('jobId missing uses file name', () => {
    const log = parseOk({ agentDir: AGENT, fileName: '1004.json' }, withJobId(text, 'null'));
    assert.equal(log.jobId, 1004n);
  });

  test('jobId of uint256 max accepted', () => {
    const id = UINT256_MAX.toString();
    const log = parseOk({ agentDir: AGENT, fileName: `${id}.json` }, withJobId(text, id));
    assert.equal(log.jobId, UINT256_MAX);
  });

  const parsed: Array<[unknown, bigint]> = [
    ['1004', 1004n],
    [' 1004 ', 1004n],
    ['0x3ec', 1004n],
    ['0', 0n],
    [UINT256_MAX.toString(), UINT256_MAX],
  ];
  for (const [value, expected] of parsed) {
    test(`parseJobId reads ${JSON.stringify(value)}`, () => {
      assert.equal(parseJobId(value), expected);
    });
  }

  const rejected: Array<[unknown, RegExp]> = [
    ['', /empty/],
    ['   ', /empty/],
    ['-7', /negative/],
    ['7.5', /not a whole number/],
    ['1e3', /not a whole number/],
    ['abc', /not a whole number/],
    ['0x', /not a whole number/],
    ['+7', /not a whole number/],
    [(1n << 256n).toString(), /does not fit in uint256/],
    [7, /not a number 7|must be a string or an integer/],
    [true, /must be a string or an integer/],
    [[1], /must be a string or an integer/],
  ];
  for (const [value, reason] of rejected) {
    test(`parseJobId rejects ${JSON.stringify(value)}`, () => {
      const result = parseJobId(value);
      assert.equal(typeof result, 'string');
      assert.match(String(result), reason);
    });
  }
});

describe('agent', () => {
  const cases: Array<[string, string]> = [
    [AGENT, AGENT],
    ['research-agent.agent.agi.eth', 'research-agent_agent_agi_eth'],
    ['a b..c', 'a_b_c'],
    ['unknown', 'unknown'],
  ];
  for (const [agent, folder] of cases) {
    test(`agentDirName maps ${agent}`, () => {
      assert.equal(agentDirName(agent), folder);
    });
  }

  test('agent missing uses folder name', () => {
    const text = sampleText(AGENT, '1004.json').replace(`"agent": "${AGENT}",`, '');
    const log = parseOk({ agentDir: AGENT, fileName: '1004.json' }, text);
    assert.equal(log.agent, AGENT);
  });

  test('agent lowercase gets checksummed', () => {
    const lower = AGENT.toLowerCase();
    const text = sampleText(AGENT, '1004.json').replace(
      `"agent": "${AGENT}"`,
      `"agent": "${lower}"`,
    );
    const log = parseOk({ agentDir: lower, fileName: '1004.json' }, text);
    assert.equal(log.agent, AGENT);
  });
});

describe('computed summary', () => {
  const stageLog = (stages: unknown[]): string =>
    JSON.stringify({ jobId: '77', agent: AGENT, stages }, null, 2);
  const location = { agentDir: AGENT, fileName: '77.json' };

  test('summary computed from sample stages', () => {
    const text = sampleText(AGENT, '1005.json');
    const withoutSummary = text.slice(0, text.indexOf(',\n  "summary"')) + '\n}\n';
    const log = parseOk({ agentDir: AGENT, fileName: '1005.json' }, withoutSummary);
    const figures = mapOk(log);

    const stages = readNumbersAsText(text).stages;
    const cpu = sum(stages.map((stage) => scaled(stage.cpuTimeMs)));
    const gpu = sum(stages.map((stage) => scaled(stage.gpuTimeMs)));
    const efficiency = sum(stages.map((stage) => scaled(stage.efficiencyScore)));
    const latest = Math.max(...stages.map((stage) => Date.parse(stage.timestamp)));

    assert.equal(log.summaryComputed, true);
    assert.equal(log.lastUpdatedMs, latest);
    assert.equal(figures.uPre, roundHalfUp(cpu));
    assert.equal(figures.uPost, roundHalfUp(sum([cpu, gpu])));
    assert.equal(figures.energy, roundHalfUp(sum([cpu, gpu])));
    assert.equal(figures.value, roundHalfUp(shift(efficiency, 6), BigInt(stages.length)));
    assert.equal(figures.degeneracy, 5n);
    assert.equal(figures.epochId, BigInt(latest) / DAY_MS);
  });

  test('computed summary with GPU time', () => {
    const log = parseOk(
      location,
      stageLog([
        {
          cpuTimeMs: 1.25,
          gpuTimeMs: 0.4,
          efficiencyScore: 50,
          timestamp: '2026-12-04T10:00:00.000Z',
        },
        {
          cpuTimeMs: '2.25',
          gpuTimeMs: '0.4',
          efficiencyScore: 51,
          timestamp: '2026-12-04T09:00:00.000Z',
        },
      ]),
    );
    const figures = mapOk(log);

    assert.equal(log.lastUpdatedMs, Date.parse('2026-12-04T10:00:00.000Z'));
    // CPU 3.5 and GPU 0.8 sum to 4.3 before rounding; rounding each first would give 5.
    assert.equal(figures.uPre, 4n);
    assert.equal(figures.uPost, 4n);
    assert.equal(figures.energy, 4n);
    assert.equal(figures.value, 50_500_000n);
    assert.equal(figures.degeneracy, 2n);
  });

  test('computed mean rounds exactly', () => {
    const log = parseOk(
      location,
      stageLog([
        { cpuTimeMs: 1, efficiencyScore: '0.0000001', timestamp: '2026-12-04T10:00:00.000Z' },
        { cpuTimeMs: 1, efficiencyScore: '0.0000001', timestamp: '2026-12-04T10:00:00.000Z' },
        { cpuTimeMs: 1, efficiencyScore: '0.0000013', timestamp: '2026-12-04T10:00:00.000Z' },
      ]),
    );
    // The mean is 0.0000005, so value is 0.5 before rounding: half up gives 1.
    assert.equal(mapOk(log).value, 1n);
  });

  test('stage not an object skipped', () => {
    const outcome = parseEnergyLog(
      location,
      stageLog([
        { cpuTimeMs: 1, efficiencyScore: 1, timestamp: '2026-12-04T10:00:00.000Z' },
        'oops',
      ]),
      NOW_MS,
    );
    assert.ok(!outcome.ok);
    assert.equal(outcome.skip.code, 'no-figures');
    assert.match(outcome.skip.reason, /stages\[1\]/);
  });

  test('empty stages skipped', () => {
    const outcome = parseEnergyLog(location, stageLog([]), NOW_MS);
    assert.ok(!outcome.ok);
    assert.equal(outcome.skip.code, 'no-figures');
  });
});

describe('skip details', () => {
  const location = { agentDir: AGENT, fileName: '1004.json' };
  const valid = sampleText(AGENT, '1004.json');

  const transient: Array<[string, string, SkipCode]> = [
    ['empty file', '', 'empty'],
    ['blank file', ' \n\t', 'empty'],
    ['BOM only', '\uFEFF', 'empty'],
    ['truncated file', valid.slice(0, 200), 'invalid-json'],
    [
      'future time',
      valid.replace(/"lastUpdated": "[^"]+"/, '"lastUpdated": "2026-12-06T00:00:01.000Z"'),
      'future-time',
    ],
  ];
  for (const [name, text, code] of transient) {
    test(`${name} skip is transient`, () => {
      const outcome = parseEnergyLog(location, text, NOW_MS);
      assert.ok(!outcome.ok);
      assert.equal(outcome.skip.code, code);
      assert.equal(outcome.skip.transient, true);
    });
  }

  test('time one day ahead accepted', () => {
    const text = valid.replace(
      /"lastUpdated": "[^"]+"/,
      '"lastUpdated": "2026-12-06T00:00:00.000Z"',
    );
    assert.equal(parseOk(location, text).lastUpdatedMs, NOW_MS + 86_400_000);
  });

  test('time with offset converted', () => {
    const text = valid.replace(
      /"lastUpdated": "[^"]+"/,
      '"lastUpdated": "2026-12-04T23:30:00+05:30"',
    );
    assert.equal(parseOk(location, text).lastUpdatedMs, Date.parse('2026-12-04T18:00:00.000Z'));
  });

  test('non-json file name skipped', () => {
    const outcome = parseEnergyLog({ agentDir: AGENT, fileName: 'notes.txt' }, valid, NOW_MS);
    assert.ok(!outcome.ok);
    assert.equal(outcome.skip.code, 'not-a-log-file');
    assert.equal(outcome.skip.transient, false);
  });

  test('bad file name skipped', () => {
    const outcome = parseEnergyLog({ agentDir: AGENT, fileName: 'job.json' }, valid, NOW_MS);
    assert.ok(!outcome.ok);
    assert.equal(outcome.skip.code, 'invalid-job-id');
    assert.match(outcome.skip.reason, /file name/);
  });

  test('averageEfficiency falls back to efficiencyScore', () => {
    const text = valid.replace(/"averageEfficiency": [^,]+,/, '');
    assert.equal(mapOk(parseOk(location, text)).value, 75399786n);
  });

  test('missing GPU total counts as zero', () => {
    const text = valid.replace(/"totalGpuTimeMs": 0,/, '');
    assert.equal(mapOk(parseOk(location, text)).uPost, 20n);
  });
});

describe('malformed times and nesting', () => {
  const location = { agentDir: AGENT, fileName: '1004.json' };
  const valid = sampleText(AGENT, '1004.json');
  const withTime = (time: string): string =>
    valid.replace(/"lastUpdated": "[^"]+"/, `"lastUpdated": ${time}`);

  test('object time does not throw', () => {
    const text = withTime('{"toString": 1}');
    let outcome: ParseOutcome | undefined;
    assert.doesNotThrow(() => {
      outcome = parseEnergyLog(location, text, NOW_MS);
    });
    assert.ok(outcome !== undefined);
    assert.ok(!outcome.ok);
    assert.equal(outcome.skip.code, 'invalid-time');
  });

  const impossible = [
    '2026-02-30T12:00:00.000Z',
    '2026-02-29T12:00:00.000Z',
    '2026-04-31T00:00:00Z',
  ];
  for (const time of impossible) {
    test(`impossible date ${time.slice(0, 10)} rejected`, () => {
      const outcome = parseEnergyLog(location, withTime(`"${time}"`), NOW_MS);
      assert.ok(!outcome.ok, `${time} was accepted`);
      assert.equal(outcome.skip.code, 'invalid-time');
      assert.match(outcome.skip.reason, /not a real date/);
    });
  }

  test('leap day accepted', () => {
    const log = parseOk(location, withTime('"2024-02-29T12:00:00.000Z"'));
    assert.equal(log.lastUpdatedMs, Date.parse('2024-02-29T12:00:00.000Z'));
  });

  test('time before 1970 rejected', () => {
    const outcome = parseEnergyLog(location, withTime('"1969-12-31T23:59:59.999Z"'), NOW_MS);
    assert.ok(!outcome.ok);
    assert.equal(outcome.skip.code, 'invalid-time');
    assert.match(outcome.skip.reason, /before 1970/);
  });

  test('epoch start accepted', () => {
    const log = parseOk(location, withTime('"1970-01-01T00:00:00.000Z"'));
    assert.equal(mapOk(log).epochId, 0n);
  });

  /** Wraps the log's summary so that the whole document is `depth` levels deep. */
  const nestedTo = (depth: number): string => {
    const inner = depth - 1;
    return valid.replace(
      '"summary": {',
      `"metadata": ${'['.repeat(inner)}${']'.repeat(inner)},\n  "summary": {`,
    );
  };

  test('nesting at limit accepted', () => {
    assert.equal(parseOk(location, nestedTo(MAX_NESTING_DEPTH)).jobId, 1004n);
  });

  test('deep nesting skipped for good', () => {
    const outcome = parseEnergyLog(location, nestedTo(10_000), NOW_MS);
    assert.ok(!outcome.ok);
    assert.equal(outcome.skip.code, 'too-large');
    assert.equal(outcome.skip.transient, false);
    assert.match(outcome.skip.reason, /nested more than 1000 levels/);
  });

  test('brackets inside strings not counted', () => {
    const brackets = '['.repeat(5000);
    const text = valid.replace('"summary": {', `"note": "${brackets}",\n  "summary": {`);
    assert.equal(parseOk(location, text).jobId, 1004n);
  });

  test('escaped quote keeps string open', () => {
    const brackets = '['.repeat(5000);
    const text = valid.replace('"summary": {', `"note": "say \\" ${brackets}",\n  "summary": {`);
    assert.equal(parseOk(location, text).jobId, 1004n);
  });
});

/** Checks the contract of parseEnergyLog followed by mapFigures for one input. */
function checkOutcome(location: LogLocation, text: string): void {
  const outcome = parseEnergyLog(location, text, NOW_MS);

  if (!outcome.ok) {
    assert.ok(SKIP_CODES.has(outcome.skip.code), `unknown skip code ${outcome.skip.code}`);
    assert.equal(typeof outcome.skip.reason, 'string');
    assert.ok(outcome.skip.reason.length > 0, 'empty skip reason');
    assert.equal(typeof outcome.skip.transient, 'boolean');
    return;
  }

  const figures = mapFigures(outcome.log, SETTINGS);
  if (typeof figures === 'string') {
    assert.ok(figures.length > 0, 'empty mapping reason');
    return;
  }
  assertInRange('jobId', figures.jobId, 0n, UINT256_MAX);
  assert.equal(figures.user, getAddress(figures.user));
  assertInRange('energy', figures.energy, INT256_MIN, INT256_MAX);
  assertInRange('degeneracy', figures.degeneracy, 1n, UINT256_MAX);
  assertInRange('epochId', figures.epochId, 0n, UINT256_MAX);
  assert.ok(Number.isInteger(figures.role), `role ${figures.role} is not an integer`);
  assert.ok(figures.role >= 0, `role ${figures.role} is below 0`);
  assert.ok(figures.role <= 255, `role ${figures.role} is above 255`);
  assertInRange('uPre', figures.uPre, 0n, UINT256_MAX);
  assertInRange('uPost', figures.uPost, figures.uPre, UINT256_MAX);
  assertInRange('value', figures.value, 0n, UINT256_MAX);
}

function assertInRange(name: string, value: bigint, min: bigint, max: bigint): void {
  assert.equal(typeof value, 'bigint', `${name} is not a bigint`);
  assert.ok(value >= min, `${name} ${value} is below ${min}`);
  assert.ok(value <= max, `${name} ${value} is above ${max}`);
}

/** Marks a raw JSON token (such as 1e400) inside a value that JSON.stringify will write. */
class RawToken {
  constructor(readonly text: string) {}
}

/** Writes JSON, copying RawToken values verbatim so that numbers a double cannot hold survive. */
function toJson(value: unknown): string {
  const tokens: string[] = [];
  const text = JSON.stringify(value, (_key, item: unknown) => {
    if (!(item instanceof RawToken)) return item;
    tokens.push(item.text);
    return `@@raw${tokens.length - 1}@@`;
  });
  return text.replace(/"@@raw(\d+)@@"/g, (_match, index: string) => tokens[Number(index)] ?? '');
}

const hugeDigits = fc.stringMatching(/^[1-9]\d{0,120}$/);

/** Values that a mutation writes into a field of a valid log. */
const fieldValue: fc.Arbitrary<unknown> = fc.oneof(
  fc.string(),
  fc.constantFrom(
    'NaN',
    'Infinity',
    '-Infinity',
    'nan',
    '1e999',
    '0x10',
    '',
    '  ',
    '1_000',
    '\uFF11\uFF12',
    '-0',
    '+5',
    '.5',
    '5.',
    '1,5',
    'null',
    'true',
    '1e-400',
    '12abc',
  ),
  fc.double().map((value) => new RawToken(JSON.stringify(value))),
  fc.integer().map((value) => new RawToken(String(value))),
  fc.bigInt({ min: -(1n << 300n), max: 1n << 300n }).map((value) => new RawToken(value.toString())),
  fc
    .tuple(hugeDigits, fc.integer({ min: -450, max: 450 }))
    .map(([digits, exponent]) => new RawToken(`${digits}e${exponent}`)),
  fc
    .tuple(fc.constantFrom('', '-'), hugeDigits, hugeDigits)
    .map(([sign, whole, fraction]) => `${sign}${whole}.${fraction}`),
  fc
    .date({
      min: new Date('0000-01-01T00:00:00.000Z'),
      max: new Date('9999-12-31T23:59:59.999Z'),
      noInvalidDate: true,
    })
    .map((date) => date.toISOString()),
  fc.constantFrom(null, true, false, [], {}),
  // Keys that shadow Object.prototype methods break String(value) and template literals.
  fc.constantFrom<unknown>(
    { toString: 1 },
    { valueOf: 'x', toString: null },
    JSON.parse('{"__proto__": {"summary": 1}}'),
    { constructor: {} },
  ),
  fc.jsonValue({ maxDepth: 3 }),
  fc.constant(undefined),
);

const SUMMARY_FIELDS = [
  'totalCpuTimeMs',
  'totalGpuTimeMs',
  'energyScore',
  'averageEfficiency',
  'efficiencyScore',
  'runs',
  'lastUpdated',
];
const STAGE_FIELDS = ['cpuTimeMs', 'gpuTimeMs', 'efficiencyScore', 'timestamp'];

/** Where a mutation writes: a top-level field, a summary field or a stage field. */
const fieldPath: fc.Arbitrary<Array<string | number>> = fc.oneof(
  fc.constantFrom<Array<string | number>>(
    ['jobId'],
    ['agent'],
    ['summary'],
    ['stages'],
    ['metadata'],
    ['stages', 0],
  ),
  fc.constantFrom(...SUMMARY_FIELDS).map((field) => ['summary', field]),
  fc
    .tuple(fc.integer({ min: 0, max: 2 }), fc.constantFrom(...STAGE_FIELDS))
    .map(([index, field]) => ['stages', index, field]),
);

type Mutation = { path: Array<string | number>; value: unknown };

function applyMutation(log: Record<string, unknown>, mutation: Mutation): void {
  let target: unknown = log;
  for (const step of mutation.path.slice(0, -1)) {
    if (typeof target !== 'object' || target === null) return;
    target = (target as Record<string | number, unknown>)[step];
  }
  if (typeof target !== 'object' || target === null) return;

  const last = mutation.path[mutation.path.length - 1];
  if (last === undefined) return;
  const record = target as Record<string | number, unknown>;
  if (mutation.value === undefined) delete record[last];
  else if (mutation.value instanceof RawToken) record[last] = mutation.value;
  // fast-check hands out the same object to several runs, so later mutations must not edit it.
  else record[last] = structuredClone(mutation.value);
}

describe('parse properties', () => {
  const location = { agentDir: AGENT, fileName: '1004.json' };
  const base = JSON.parse(sampleText(AGENT, '1004.json')) as Record<string, unknown>;

  test('valid base log maps', () => {
    assert.doesNotThrow(() => mapOk(parseOk(location, toJson(base))));
  });

  test('arbitrary text never throws', () => {
    const fileName = fc.constantFrom('1004.json', '0x3ec.json', 'x.json', '.json', '1004');
    fc.assert(
      fc.property(
        fc.string({ unit: 'binary', maxLength: 300 }),
        fc.string(),
        fileName,
        (text, agentDir, name) => {
          checkOutcome({ agentDir, fileName: name }, text);
        },
      ),
      { numRuns: 1000 },
    );
  });

  test('arbitrary JSON never throws', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        checkOutcome(location, JSON.stringify(value) ?? '');
      }),
      { numRuns: 1000 },
    );
  });

  test('arbitrary JSON object never throws', () => {
    const document = fc.dictionary(
      fc.constantFrom('jobId', 'agent', 'summary', 'stages', 'metadata', 'x'),
      fc.jsonValue({ maxDepth: 3 }),
    );
    fc.assert(
      fc.property(document, (value) => {
        checkOutcome(location, JSON.stringify(value));
      }),
      { numRuns: 1000 },
    );
  });

  test('mutated log never throws', () => {
    fc.assert(mutatedLogProperty(base, fieldValue), { numRuns: 3000 });
  });
});

/** Mutates up to four fields of `base` (and maybe drops its summary), then checks the outcome. */
function mutatedLogProperty(
  base: Record<string, unknown>,
  values: fc.Arbitrary<unknown>,
): fc.IPropertyWithHooks<[Mutation[], boolean]> {
  const location = { agentDir: AGENT, fileName: '1004.json' };
  const mutations = fc.array(fc.record({ path: fieldPath, value: values }), {
    minLength: 1,
    maxLength: 4,
  });
  return fc.property(mutations, fc.boolean(), (list, dropSummary) => {
    const log = structuredClone(base);
    if (dropSummary) delete log.summary;
    for (const mutation of list) applyMutation(log, mutation);
    checkOutcome(location, toJson(log));
  });
}

describe('duplicate keys', () => {
  test('duplicate key skip not transient', () => {
    const location = { agentDir: AGENT, fileName: '77.json' };
    const text = `{"jobId": "77", "agent": "${AGENT}", "jobId": "78"}`;
    const outcome = parseEnergyLog(location, text, NOW_MS);
    assert.equal(outcome.ok, false);
    if (outcome.ok) return;
    assert.equal(outcome.skip.code, 'invalid-json');
    assert.match(outcome.skip.reason, /duplicate key/);
    assert.equal(outcome.skip.transient, false);
  });
});
