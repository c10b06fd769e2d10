import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { AttestationFigures, MappingSettings } from '../../apps/operator/attestation';
import { mapFigures } from '../../apps/operator/attestation';
import { parseEnergyLog } from '../../apps/operator/energy-log';

const CORPUS = path.join(__dirname, '../fixtures/logs');
const NOW_MS = Date.parse('2026-12-05T00:00:00.000Z');

/** The TELEMETRY_* defaults of config.ts. */
const SETTINGS: MappingSettings = {
  energyScaling: '1',
  valueScaling: '1000000',
  epochDurationSec: 86400,
  role: 2,
};

type Expectation =
  | { outcome: 'attested'; attestation: Record<keyof AttestationFigures, string> }
  | { outcome: 'skipped'; code: string; reasonIncludes: string };

type Outcome =
  | { outcome: 'attested'; attestation: Record<string, string> }
  | { outcome: 'skipped'; code: string; reason: string };

interface CaseFile {
  agentDir: string;
  fileName: string;
  text: string;
}

function readCase(name: string): CaseFile {
  const caseFolder = path.join(CORPUS, name);
  const agentDirs = fs.readdirSync(caseFolder);
  assert.equal(agentDirs.length, 1, `${name} must hold exactly one agent folder`);
  const agentDir = agentDirs[0] ?? '';

  const files = fs.readdirSync(path.join(caseFolder, agentDir));
  assert.equal(files.length, 1, `${name}/${agentDir} must hold exactly one log file`);
  const fileName = files[0] ?? '';

  const text = fs.readFileSync(path.join(caseFolder, agentDir, fileName), 'utf8');
  return { agentDir, fileName, text };
}

/** Runs a case through parse and map the way the service does. */
function runCase(file: CaseFile): Outcome {
  const parsed = parseEnergyLog(file, file.text, NOW_MS);
  if (!parsed.ok) return { outcome: 'skipped', code: parsed.skip.code, reason: parsed.skip.reason };

  const figures = mapFigures(parsed.log, SETTINGS);
  // The service counts a value that does not fit its Solidity type as an invalid-number skip.
  if (typeof figures === 'string')
    return { outcome: 'skipped', code: 'invalid-number', reason: figures };

  const attestation: Record<string, string> = {};
  for (const [name, value] of Object.entries(figures)) attestation[name] = String(value);
  return { outcome: 'attested', attestation };
}

const expectations = JSON.parse(
  fs.readFileSync(path.join(CORPUS, 'expected.json'), 'utf8'),
) as Record<string, Expectation>;
const caseNames = fs
  .readdirSync(CORPUS, { withFileTypes: true })
  .filter((entry) => entry.isDirectory())
  .map((entry) => entry.name)
  .sort();

describe('fixture corpus', () => {
  test('every case has an expectation', () => {
    assert.deepEqual(caseNames, Object.keys(expectations).sort());
  });

  test('corpus covers every parse skip code', () => {
    const codes = new Set(
      Object.values(expectations).flatMap((expected) =>
        expected.outcome === 'skipped' ? [expected.code] : [],
      ),
    );
    // not-a-log-file is for names other than <jobId>.json, which the scanner never passes on.
    const parseCodes = [
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
    ];
    for (const code of parseCodes) assert.ok(codes.has(code), `no case for ${code}`);
  });

  for (const name of caseNames) {
    const expected = expectations[name];

    test(`case ${name}`, () => {
      assert.ok(expected !== undefined, `${name} has no entry in expected.json`);
      const actual = runCase(readCase(name));

      if (expected.outcome === 'attested') {
        if (actual.outcome !== 'attested')
          assert.fail(`skipped as ${actual.code}: ${actual.reason}`);
        assert.deepEqual(actual.attestation, expected.attestation);
        return;
      }

      if (actual.outcome !== 'skipped')
        assert.fail(`attested: ${JSON.stringify(actual.attestation)}`);
      assert.equal(actual.code, expected.code, actual.reason);
      assert.ok(
        actual.reason.includes(expected.reasonIncludes),
        `reason ${JSON.stringify(actual.reason)} lacks ${JSON.stringify(expected.reasonIncludes)}`,
      );
    });
  }
});
