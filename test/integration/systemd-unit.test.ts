import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { promisify } from 'node:util';
import { DEFAULTS } from '../../apps/operator/config';
import { REPO_ROOT } from '../support/daemon-process';

/**
 * Checks the systemd unit and the example environment file that it reads. The key checks
 * always run; `systemd-analyze` (Debian package systemd) runs when it is installed.
 */

const UNIT_FILE = path.join(REPO_ROOT, 'deploy/systemd/agijobs-operator-telemetry.service');
const ENV_EXAMPLE = path.join(REPO_ROOT, '.env.example');
const SYSTEMD_ANALYZE = '/usr/bin/systemd-analyze';
const WORKING_DIRECTORY = '/opt/agijobs';
/** Exit codes of apps/operator/telemetry.ts after which a restart cannot help. */
const NO_RESTART_EXIT_CODES = ['65', '75', '78'];
/** Highest `systemd-analyze security` exposure accepted, in tenths (25 is 2.5 of 10). */
const MAX_EXPOSURE_TENTHS = 25;
const SECRET_VARIABLES = ['ENERGY_ORACLE_SIGNER_KEY', 'ENERGY_ORACLE_API_TOKEN'];

const execFileAsync = promisify(execFile);

/** Every assignment per section and key, in file order; comment lines are left out. */
type UnitFile = Map<string, Map<string, string[]>>;

function parseUnitFile(text: string): UnitFile {
  const sections: UnitFile = new Map();
  let section: Map<string, string[]> | undefined;
  let pending = '';

  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (pending === '' && (line === '' || line.startsWith('#') || line.startsWith(';'))) continue;
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1)} `;
      continue;
    }
    const logical = pending + line;
    pending = '';

    const header = /^\[(.+)\]$/.exec(logical);
    if (header !== null) {
      section = new Map();
      sections.set(header[1]!, section);
      continue;
    }
    const index = logical.indexOf('=');
    assert.ok(section !== undefined, `line before the first [section]: ${logical}`);
    assert.ok(index > 0, `line without key=value: ${logical}`);
    const key = logical.slice(0, index).trim();
    section.set(key, [...(section.get(key) ?? []), logical.slice(index + 1).trim()]);
  }
  return sections;
}

function unitValue(unit: UnitFile, section: string, key: string): string | undefined {
  return unit.get(section)?.get(key)?.at(-1);
}

function toolMissing(file: string): string | false {
  return fs.existsSync(file) ? false : `${file} is not installed (Debian package systemd)`;
}

describe('systemd unit', () => {
  const unit = parseUnitFile(fs.readFileSync(UNIT_FILE, 'utf8'));
  const service = (key: string): string | undefined => unitValue(unit, 'Service', key);

  test('runs the built daemon', () => {
    assert.equal(service('WorkingDirectory'), WORKING_DIRECTORY);
    assert.equal(service('ExecStart'), '/usr/bin/node apps/operator/dist/telemetry.js');
    assert.equal(service('Type'), 'simple');
    assert.equal(unitValue(unit, 'Install', 'WantedBy'), 'multi-user.target');
  });

  test('dedicated account, not root', () => {
    for (const key of ['User', 'Group']) {
      const account = service(key);
      assert.ok(account !== undefined, `${key}= is set`);
      assert.notEqual(account, '');
      assert.notEqual(account, 'root');
      assert.notEqual(account, '0');
    }
  });

  test('restart policy', () => {
    assert.equal(service('Restart'), 'on-failure');
    assert.equal(service('RestartSec'), '10');
    assert.deepEqual(service('RestartPreventExitStatus')?.split(/\s+/), NO_RESTART_EXIT_CODES);
    assert.equal(service('KillSignal'), 'SIGTERM');
    // The daemon stops within 8 s of SIGTERM; a shorter timeout would cut that short.
    assert.equal(service('TimeoutStopSec'), '20');
  });

  test('sandbox keeps the state writable', () => {
    assert.equal(service('NoNewPrivileges'), 'true');
    assert.equal(service('ProtectSystem'), 'strict');
    assert.equal(service('PrivateTmp'), 'true');
    assert.equal(service('ProtectHome'), 'true');
    // V8's JIT compiler needs writable and executable memory.
    assert.equal(service('MemoryDenyWriteExecute'), undefined);

    const stateFolder = path.posix.dirname(
      path.posix.resolve(WORKING_DIRECTORY, DEFAULTS.TELEMETRY_STATE_FILE!),
    );
    assert.deepEqual(service('ReadWritePaths')?.split(/\s+/), [stateFolder]);
  });

  test('secrets stay out of the unit', () => {
    assert.deepEqual(unit.get('Service')?.get('EnvironmentFile'), [
      '-/etc/agijobs/operator-telemetry.env',
    ]);
    for (const assignment of unit.get('Service')?.get('Environment') ?? []) {
      for (const secret of SECRET_VARIABLES) {
        assert.ok(!assignment.includes(`${secret}=`), `Environment= sets ${secret}`);
      }
    }
  });

  test('systemd-analyze verify passes', { skip: toolMissing(SYSTEMD_ANALYZE) }, async (context) => {
    if (!fs.existsSync('/usr/bin/node')) {
      context.skip('ExecStart=/usr/bin/node does not exist here, so verify would reject it');
      return;
    }
    // verify exits 0 on unknown keys and invalid values; it only prints them.
    const { stdout, stderr } = await execFileAsync(SYSTEMD_ANALYZE, [
      'verify',
      '--man=no',
      '--generators=no',
      UNIT_FILE,
    ]);
    const findings = `${stdout}${stderr}`
      .split('\n')
      .filter((line) => line.includes(path.basename(UNIT_FILE)));
    assert.deepEqual(findings, []);
  });

  test('security exposure stays low', { skip: toolMissing(SYSTEMD_ANALYZE) }, async () => {
    const result = await execFileAsync(SYSTEMD_ANALYZE, [
      'security',
      '--offline=true',
      `--threshold=${MAX_EXPOSURE_TENTHS}`,
      '--no-pager',
      UNIT_FILE,
    ]).catch((error: Error & { stdout?: string }) => {
      assert.fail(`exposure above ${MAX_EXPOSURE_TENTHS / 10}:\n${error.stdout ?? error.message}`);
    });
    assert.match(result.stdout, /Overall exposure level/);
  });
});

describe('.env.example', () => {
  const lines = fs.readFileSync(ENV_EXAMPLE, 'utf8').split('\n');
  const assignments = new Map<string, { value: string; comment: string | undefined }>();
  lines.forEach((line, index) => {
    const match = /^([A-Z][A-Z0-9_]*)=(.*)$/.exec(line);
    if (match === null) return;
    assert.ok(!assignments.has(match[1]!), `${match[1]} is listed once`);
    const previous = lines[index - 1];
    assignments.set(match[1]!, {
      value: match[2]!,
      comment: previous?.startsWith('# ') === true ? previous : undefined,
    });
  });

  test('lists every variable with its default', () => {
    assert.deepEqual([...assignments.keys()].sort(), Object.keys(DEFAULTS).sort());
    for (const [name, fallback] of Object.entries(DEFAULTS)) {
      assert.equal(assignments.get(name)?.value, fallback ?? '', name);
    }
  });

  test('comments every variable', () => {
    for (const [name, { comment }] of assignments) {
      assert.ok(comment !== undefined, `${name} has a comment line above it`);
    }
  });

  test('leaves secrets empty', () => {
    for (const name of SECRET_VARIABLES) assert.equal(assignments.get(name)?.value, '');
  });
});
