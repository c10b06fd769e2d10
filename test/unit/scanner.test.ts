import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ScannedFile, ScannerOptions } from '../../apps/operator/scanner';
import { LogScanner, shardOf } from '../../apps/operator/scanner';

const SAMPLES = path.join(__dirname, '../fixtures/samples');
const AGENT = '0x4D83E0BCc1CaD3eB9a321da3Ae0e30680F4ff7E8';
const OTHER_AGENT = '0x6ED55d052B4b32a70dE777219dD6920084A8B3b6';
const NOW_MS = Date.parse('2026-12-05T00:00:00.000Z');
const OPTIONS: ScannerOptions = { maxFileBytes: 1024 * 1024, fullScanEvery: 1000 };

const temporary = fs.mkdtempSync(path.join(os.tmpdir(), 'scanner-test-'));
after(() => fs.rmSync(temporary, { recursive: true, force: true }));

let folderCounter = 0;

/** Creates an empty folder under the temporary folder. */
function freshFolder(): string {
  folderCounter += 1;
  const folder = path.join(temporary, `case-${folderCounter}`);
  fs.mkdirSync(folder);
  return folder;
}

/** Returns the text of sample 1004 with the given jobId and agent. */
function logText(jobId = '1004', agent = AGENT): string {
  const text = fs.readFileSync(path.join(SAMPLES, AGENT, '1004.json'), 'utf8');
  return text.replaceAll('"jobId": "1004"', `"jobId": "${jobId}"`).replaceAll(AGENT, agent);
}

function writeLog(root: string, agentDir: string, fileName: string, text: string): string {
  fs.mkdirSync(path.join(root, agentDir), { recursive: true });
  const file = path.join(root, agentDir, fileName);
  fs.writeFileSync(file, text);
  return file;
}

function names(changed: ScannedFile[]): string[] {
  return changed
    .map((scanned) => path.relative(path.dirname(path.dirname(scanned.file)), scanned.file))
    .sort();
}

function jobIdOf(scanned: ScannedFile | undefined): bigint | undefined {
  return scanned?.outcome.ok ? scanned.outcome.log.jobId : undefined;
}

describe('change detection', () => {
  test('unchanged tree not read again', async () => {
    const root = freshFolder();
    writeLog(root, AGENT, '1004.json', logText());
    writeLog(root, AGENT, '1005.json', logText('1005'));
    const scanner = new LogScanner(root, OPTIONS);

    const first = await scanner.scan(NOW_MS);
    const second = await scanner.scan(NOW_MS);

    assert.deepEqual(names(first.changed), [`${AGENT}/1004.json`, `${AGENT}/1005.json`]);
    assert.ok(first.changed.every((scanned) => scanned.outcome.ok));
    assert.deepEqual(second.changed, []);
    assert.equal(second.filesSeen, 2);
  });

  test('modified file read again', async () => {
    const root = freshFolder();
    const file = writeLog(root, AGENT, '1004.json', logText());
    const scanner = new LogScanner(root, OPTIONS);
    await scanner.scan(NOW_MS);

    fs.writeFileSync(file, logText().replace('"energyScore": 20.268', '"energyScore": 120.268'));
    const second = await scanner.scan(NOW_MS);

    assert.equal(second.changed.length, 1);
    const outcome = second.changed[0]?.outcome;
    assert.ok(outcome?.ok);
    assert.equal(outcome.log.figures.energyScore.numerator, 120268n);
  });

  test('same-size rewrite read again', async () => {
    const root = freshFolder();
    const file = writeLog(root, AGENT, '1004.json', logText());
    const scanner = new LogScanner(root, OPTIONS);
    await scanner.scan(NOW_MS);

    // File times come from a coarse kernel clock; wait so the rewrite gets a new mtime.
    await sleep(30);
    fs.writeFileSync(file, logText().replace('"energyScore": 20.268', '"energyScore": 20.269'));
    const second = await scanner.scan(NOW_MS);

    assert.equal(second.changed.length, 1);
  });

  test('half-written file retried every scan', async () => {
    const root = freshFolder();
    const full = logText();
    const file = writeLog(root, AGENT, '1004.json', full.slice(0, 120));
    const scanner = new LogScanner(root, OPTIONS);

    const scans = [
      await scanner.scan(NOW_MS),
      await scanner.scan(NOW_MS),
      await scanner.scan(NOW_MS),
    ];
    for (const scan of scans) {
      assert.equal(scan.changed.length, 1);
      const outcome = scan.changed[0]?.outcome;
      assert.ok(outcome !== undefined);
      assert.ok(!outcome.ok);
      assert.equal(outcome.skip.code, 'invalid-json');
      assert.equal(outcome.skip.transient, true);
    }
    assert.deepEqual(
      scans.map((scan) => scan.changed[0]?.report),
      [true, false, false],
    );

    fs.writeFileSync(file, full);
    const completed = await scanner.scan(NOW_MS);
    assert.equal(jobIdOf(completed.changed[0]), 1004n);
  });

  test('permanent skip not read again', async () => {
    const root = freshFolder();
    writeLog(root, 'unknown', '1004.json', logText('1004', 'unknown'));
    const scanner = new LogScanner(root, OPTIONS);

    const first = await scanner.scan(NOW_MS);
    const second = await scanner.scan(NOW_MS);

    assert.equal(first.changed.length, 1);
    assert.equal(first.changed[0]?.report, true);
    assert.deepEqual(second.changed, []);
  });

  test('full scan reads everything', async () => {
    const root = freshFolder();
    writeLog(root, AGENT, '1004.json', logText());
    writeLog(root, 'unknown', '1005.json', logText('1005', 'unknown'));
    const scanner = new LogScanner(root, { ...OPTIONS, fullScanEvery: 2 });

    const first = await scanner.scan(NOW_MS);
    const second = await scanner.scan(NOW_MS);

    assert.equal(first.fullScan, false);
    assert.equal(second.fullScan, true);
    assert.equal(second.changed.length, 2);
    const skipped = second.changed.find((scanned) => !scanned.outcome.ok);
    assert.equal(skipped?.report, false, 'an unchanged skip is not reported twice');
  });

  test('forget forces read', async () => {
    const root = freshFolder();
    const file = writeLog(root, AGENT, '1004.json', logText());
    const scanner = new LogScanner(root, OPTIONS);
    await scanner.scan(NOW_MS);

    scanner.forget(file);
    const second = await scanner.scan(NOW_MS);
    assert.equal(second.changed.length, 1);
  });

  test('deleted then restored file read', async () => {
    const root = freshFolder();
    const file = writeLog(root, AGENT, '1004.json', logText());
    const scanner = new LogScanner(root, OPTIONS);
    await scanner.scan(NOW_MS);

    fs.rmSync(file);
    const without = await scanner.scan(NOW_MS);
    writeLog(root, AGENT, '1004.json', logText());
    const restored = await scanner.scan(NOW_MS);

    assert.equal(without.filesSeen, 0);
    assert.equal(restored.changed.length, 1);
  });

  test('oversized file skipped', async () => {
    const root = freshFolder();
    writeLog(root, AGENT, '1004.json', logText());
    const scanner = new LogScanner(root, { ...OPTIONS, maxFileBytes: 100 });

    const outcome = (await scanner.scan(NOW_MS)).changed[0]?.outcome;
    assert.ok(outcome !== undefined);
    assert.ok(!outcome.ok);
    assert.equal(outcome.skip.code, 'too-large');
    assert.match(outcome.skip.reason, /TELEMETRY_MAX_FILE_BYTES \(100\)/);
  });
});

describe('tree layout', () => {
  test('folder named like log reported once', async () => {
    const root = freshFolder();
    writeLog(root, AGENT, '1004.json', logText());
    fs.mkdirSync(path.join(root, AGENT, '1005.json'));
    const scanner = new LogScanner(root, OPTIONS);

    const first = await scanner.scan(NOW_MS);
    const second = await scanner.scan(NOW_MS);

    assert.deepEqual(first.problems, [
      {
        path: path.join(root, AGENT, '1005.json'),
        reason: 'a folder named like a log file is ignored',
      },
    ]);
    assert.deepEqual(names(first.changed), [`${AGENT}/1004.json`]);
    assert.deepEqual(second.problems, []);
  });

  test('json in root reported once', async () => {
    const root = freshFolder();
    fs.writeFileSync(path.join(root, '1004.json'), logText());
    const scanner = new LogScanner(root, OPTIONS);

    const first = await scanner.scan(NOW_MS);
    const second = await scanner.scan(NOW_MS);

    assert.equal(first.problems.length, 1);
    assert.equal(first.problems[0]?.path, path.join(root, '1004.json'));
    assert.match(first.problems[0]?.reason ?? '', /directly in the log root is ignored/);
    assert.deepEqual(first.changed, []);
    assert.deepEqual(second.problems, []);
  });

  test('non-json files ignored', async () => {
    const root = freshFolder();
    writeLog(root, AGENT, '1004.json', logText());
    writeLog(root, AGENT, 'notes.txt', 'not a log');
    writeLog(root, AGENT, '1005.json.tmp', logText('1005'));
    writeLog(root, AGENT, '1006.JSON', logText('1006'));
    fs.writeFileSync(path.join(root, 'README.md'), 'logs');
    const scanner = new LogScanner(root, OPTIONS);

    const scan = await scanner.scan(NOW_MS);

    assert.deepEqual(names(scan.changed), [`${AGENT}/1004.json`]);
    assert.equal(scan.filesSeen, 1);
    assert.deepEqual(scan.problems, []);
  });

  test('symlink inside root followed', async () => {
    const root = freshFolder();
    writeLog(root, path.join(AGENT, 'archive'), '1006.json', logText('1006'));
    fs.symlinkSync(path.join('archive', '1006.json'), path.join(root, AGENT, '1006.json'));
    const scanner = new LogScanner(root, OPTIONS);

    const scan = await scanner.scan(NOW_MS);

    assert.deepEqual(names(scan.changed), [`${AGENT}/1006.json`]);
    assert.equal(jobIdOf(scan.changed[0]), 1006n);
    assert.deepEqual(scan.problems, []);
  });

  test('symlinked agent folder inside root followed', async () => {
    const root = freshFolder();
    writeLog(root, 'real-folder', '1004.json', logText());
    fs.symlinkSync('real-folder', path.join(root, AGENT));
    const scanner = new LogScanner(root, OPTIONS);

    const scan = await scanner.scan(NOW_MS);

    const viaLink = scan.changed.find((scanned) => scanned.agentDir === AGENT);
    assert.equal(jobIdOf(viaLink), 1004n);
  });

  test('symlink outside root ignored', async () => {
    const root = freshFolder();
    const outside = freshFolder();
    writeLog(outside, AGENT, '1007.json', logText('1007'));
    writeLog(outside, OTHER_AGENT, '1008.json', logText('1008', OTHER_AGENT));
    fs.mkdirSync(path.join(root, AGENT));
    fs.symlinkSync(path.join(outside, AGENT, '1007.json'), path.join(root, AGENT, '1007.json'));
    fs.symlinkSync(path.join(outside, OTHER_AGENT), path.join(root, OTHER_AGENT));
    const scanner = new LogScanner(root, OPTIONS);

    const first = await scanner.scan(NOW_MS);
    const second = await scanner.scan(NOW_MS);

    assert.deepEqual(first.changed, []);
    assert.equal(first.problems.length, 2);
    for (const problem of first.problems)
      assert.match(problem.reason, /outside the log root, is ignored/);
    assert.deepEqual(second.problems, []);
  });

  test('dangling symlink reported', async () => {
    const root = freshFolder();
    fs.mkdirSync(path.join(root, AGENT));
    fs.symlinkSync(path.join(root, 'nowhere.json'), path.join(root, AGENT, '1009.json'));
    const scanner = new LogScanner(root, OPTIONS);

    const scan = await scanner.scan(NOW_MS);

    assert.deepEqual(scan.changed, []);
    assert.match(scan.problems[0]?.reason ?? '', /target does not exist/);
  });

  test('missing root reported once', async () => {
    const root = path.join(freshFolder(), 'energy');
    const scanner = new LogScanner(root, OPTIONS);

    const first = await scanner.scan(NOW_MS);
    const second = await scanner.scan(NOW_MS);
    assert.equal(first.problems.length, 1);
    assert.match(first.problems[0]?.reason ?? '', /does not exist/);
    assert.deepEqual(second.problems, []);

    writeLog(root, AGENT, '1004.json', logText());
    const created = await scanner.scan(NOW_MS);
    assert.equal(created.changed.length, 1);

    fs.rmSync(root, { recursive: true });
    const removed = await scanner.scan(NOW_MS);
    assert.equal(removed.problems.length, 1, 'a root that disappears again is reported again');
  });

  test('root that is a file reported', async () => {
    const root = path.join(freshFolder(), 'energy');
    fs.writeFileSync(root, '');
    const scan = await new LogScanner(root, OPTIONS).scan(NOW_MS);
    assert.match(scan.problems[0]?.reason ?? '', /not a folder/);
  });
});

describe('shards', () => {
  const agentDirs = Array.from(
    { length: 24 },
    (_, index) => `0x${index.toString(16).padStart(40, '0')}`,
  );

  test('shards partition agent folders', async () => {
    const root = freshFolder();
    for (const agentDir of agentDirs) writeLog(root, agentDir, '1.json', '{}');
    const count = 3;

    const seen: string[][] = [];
    for (let index = 0; index < count; index += 1) {
      const scanner = new LogScanner(root, { ...OPTIONS, shard: { index, count } });
      const scan = await scanner.scan(NOW_MS);
      const folders = scan.changed.map((scanned) => scanned.agentDir);
      for (const folder of folders) assert.equal(shardOf(folder, count), index, folder);
      seen.push(folders);
    }

    const all = seen.flat().sort();
    assert.deepEqual(all, [...agentDirs].sort(), 'every folder in exactly one shard');
    assert.ok(
      seen.every((folders) => folders.length > 0),
      'each shard gets some of 24 folders',
    );
  });

  test('shardOf ignores case', () => {
    for (const agent of [AGENT, OTHER_AGENT, '0xE02aAaF5AEF2A2EEb8B0d87d1328c87680746667']) {
      assert.equal(shardOf(agent, 1_000_003), shardOf(agent.toLowerCase(), 1_000_003), agent);
    }
  });

  test('shardOf stays in range', () => {
    for (const agentDir of agentDirs) {
      const shard = shardOf(agentDir, 5);
      assert.ok(Number.isInteger(shard), `${agentDir} -> ${shard}`);
      assert.ok(shard >= 0, `${agentDir} -> ${shard}`);
      assert.ok(shard < 5, `${agentDir} -> ${shard}`);
    }
  });

  test('single shard takes all', () => {
    for (const agentDir of agentDirs) assert.equal(shardOf(agentDir, 1), 0);
  });
});

describe('watched scanning', () => {
  test('watched change found next scan', async () => {
    const root = freshFolder();
    writeLog(root, AGENT, '1004.json', logText());
    writeLog(root, OTHER_AGENT, '1005.json', logText('1005', OTHER_AGENT));
    const scanner = new LogScanner(root, OPTIONS);
    let events = 0;
    scanner.watch(() => (events += 1));

    try {
      const first = await scanner.scan(NOW_MS);
      assert.equal(first.changed.length, 2);
      const quiet = await scanner.scan(NOW_MS);
      assert.equal(quiet.changed.length, 0);
      assert.equal(quiet.filesSeen, 2, 'quiet folders still count their files');

      writeLog(root, AGENT, '1004.json', logText().replace('"runs": 3', '"runs": 4'));
      await sleep(200);
      assert.ok(events > 0, 'the watch reported the change');
      const changed = await scanner.scan(NOW_MS);
      assert.deepEqual(names(changed.changed), [`${AGENT}/1004.json`]);
    } finally {
      scanner.close();
    }
  });

  test('new agent folder found when watched', async () => {
    const root = freshFolder();
    writeLog(root, AGENT, '1004.json', logText());
    const scanner = new LogScanner(root, OPTIONS);
    scanner.watch(() => undefined);

    try {
      await scanner.scan(NOW_MS);
      writeLog(root, OTHER_AGENT, '1006.json', logText('1006', OTHER_AGENT));
      await sleep(200);
      const second = await scanner.scan(NOW_MS);
      assert.deepEqual(names(second.changed), [`${OTHER_AGENT}/1006.json`]);
    } finally {
      scanner.close();
    }
  });

  test('closed watches fall back to listing', async () => {
    const root = freshFolder();
    writeLog(root, AGENT, '1004.json', logText());
    const scanner = new LogScanner(root, { ...OPTIONS, statWalkEvery: 2 });
    scanner.watch(() => undefined);

    try {
      await scanner.scan(NOW_MS);
      // Without watches every folder is listed again, so the change is still found.
      scanner.close();
      writeLog(root, AGENT, '1007.json', logText('1007'));
      const found = await scanner.scan(NOW_MS);
      assert.deepEqual(names(found.changed), [`${AGENT}/1007.json`]);
    } finally {
      scanner.close();
    }
  });
});
