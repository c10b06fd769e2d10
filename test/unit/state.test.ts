import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { StateError, StateLockedError } from '../../apps/operator/errors';
import type { DoneJob, SignedRevision } from '../../apps/operator/state';
import { STATE_FORMAT, STATE_VERSION, StateStore, revisionKey } from '../../apps/operator/state';

const logger = pino({ level: 'silent' });
const USER = '0x4D83E0BCc1CaD3eB9a321da3Ae0e30680F4ff7E8';

const temporary = fs.mkdtempSync(path.join(os.tmpdir(), 'state-test-'));
after(() => fs.rmSync(temporary, { recursive: true, force: true }));

let fileCounter = 0;

/** Returns a state file path in a fresh folder. */
function freshFile(): string {
  fileCounter += 1;
  const folder = path.join(temporary, `case-${fileCounter}`);
  fs.mkdirSync(folder);
  return path.join(folder, 'state.json');
}

const HEADER = JSON.stringify({
  t: 'header',
  format: STATE_FORMAT,
  version: STATE_VERSION,
  createdAt: '2026-12-04T00:00:00.000Z',
});

function doneLine(key: string, nonce: string): string {
  return JSON.stringify({ t: 'done', key, lastUpdatedMs: 1, fingerprint: 'f', nonce });
}

function signedRevision(jobId: string, nonce: string): SignedRevision {
  return {
    key: revisionKey(USER, BigInt(jobId)),
    user: USER,
    jobId,
    lastUpdatedMs: 1_796_413_824_985,
    fingerprint: '0123456789abcdef',
    attestation: { jobId, user: USER, nonce, deadline: '1796417425' },
    signature: `0x${'11'.repeat(65)}`,
    digest: `0x${'22'.repeat(32)}`,
    idempotencyKey: `key-${jobId}-${nonce}`,
    signedAtMs: 1_796_413_830_000,
  };
}

async function assertOpenFails(file: string, pattern: RegExp): Promise<void> {
  await assert.rejects(StateStore.open(file, logger), (error: unknown) => {
    assert.ok(error instanceof StateError, `expected a StateError, got ${String(error)}`);
    assert.ok(error.message.includes(file), `message does not name ${file}: ${error.message}`);
    assert.match(error.message, pattern);
    return true;
  });
}

/** Starts a process that stays alive, to own a lock file. */
async function startSleeper(): Promise<ChildProcess & { pid: number }> {
  const child = spawn('sleep', ['30'], { stdio: 'ignore' });
  await once(child, 'spawn');
  assert.ok(child.pid !== undefined);
  return child as ChildProcess & { pid: number };
}

async function stopSleeper(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  await exited;
}

/** Runs a process to its end and returns its pid. */
async function deadPid(): Promise<number> {
  const child = spawn('true', [], { stdio: 'ignore' });
  await once(child, 'exit');
  assert.ok(child.pid !== undefined);
  return child.pid;
}

function writeLock(file: string, pid: number, hostname = os.hostname()): void {
  fs.writeFileSync(
    `${file}.lock`,
    JSON.stringify({ pid, hostname, startedAt: new Date().toISOString() }),
  );
}

describe('state file', () => {
  test('open creates private file', async () => {
    const file = freshFile();
    const store = await StateStore.open(file, logger);
    await store.close();

    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
  });

  test('open writes header line', async () => {
    const file = freshFile();
    const store = await StateStore.open(file, logger);
    await store.close();

    const lines = fs.readFileSync(file, 'utf8').split('\n');
    const header = JSON.parse(lines[0] ?? '') as Record<string, unknown>;
    assert.equal(header.t, 'header');
    assert.equal(header.format, STATE_FORMAT);
    assert.equal(header.version, STATE_VERSION);
    assert.equal(lines.at(-1), '');
  });

  test('records survive reopen', async () => {
    const file = freshFile();
    const pending = signedRevision('1004', '7');
    const doneKey = revisionKey(USER, 1003n);
    const done: DoneJob = { lastUpdatedMs: 5, fingerprint: 'aa', nonce: '6', reference: '0xabc' };

    const first = await StateStore.open(file, logger);
    await first.recordDone(doneKey, done);
    await first.recordSigned(pending);
    await first.recordTransaction(pending.key, { txHash: '0xt', rawTx: '0xraw', accountNonce: 3 });
    await first.recordFailure(pending.key, 2, 'timed out');
    await first.close();

    const second = await StateStore.open(file, logger);
    const reloaded = second.pendingFor(pending.key);
    assert.deepEqual(second.done(doneKey), done);
    assert.equal(second.doneCount(), 1);
    assert.ok(reloaded !== undefined);
    assert.equal(reloaded.signature, pending.signature);
    assert.deepEqual(reloaded.attestation, pending.attestation);
    assert.deepEqual(reloaded.tx, { txHash: '0xt', rawTx: '0xraw', accountNonce: 3 });
    assert.equal(reloaded.failures, 2);
    assert.equal(reloaded.lastError, 'timed out');
    assert.equal(second.lastNonce(USER), 7n);
    assert.equal(second.nonceHolder(USER, '7')?.key, pending.key);
    await second.close();
  });

  test('done record clears pending revision', async () => {
    const file = freshFile();
    const pending = signedRevision('1004', '7');

    const first = await StateStore.open(file, logger);
    await first.recordSigned(pending);
    await first.recordDone(pending.key, {
      lastUpdatedMs: pending.lastUpdatedMs,
      fingerprint: pending.fingerprint,
      nonce: '7',
    });
    assert.equal(first.pendingFor(pending.key), undefined);
    await first.close();

    const second = await StateStore.open(file, logger);
    assert.equal(second.pending().length, 0);
    assert.equal(second.done(pending.key)?.nonce, '7');
    await second.close();
  });

  test('close removes lock file', async () => {
    const file = freshFile();
    const store = await StateStore.open(file, logger);
    assert.ok(fs.existsSync(`${file}.lock`));
    await store.close();
    assert.equal(fs.existsSync(`${file}.lock`), false);
  });

  test('torn last line ignored', async () => {
    const file = freshFile();
    const key = revisionKey(USER, 1n);
    fs.writeFileSync(
      file,
      `${HEADER}\n${doneLine(key, '3')}\n{"t":"done","key":"${USER}:2","nonce`,
    );

    const store = await StateStore.open(file, logger);
    assert.equal(store.done(key)?.nonce, '3');
    assert.equal(store.doneCount(), 1);
    await store.close();

    assert.ok(fs.readFileSync(file, 'utf8').endsWith('\n'));
  });

  test('corrupt middle line rejected', async () => {
    const file = freshFile();
    fs.writeFileSync(file, `${HEADER}\n{"t":"done",\n${doneLine(`${USER}:1`, '1')}\n`);
    await assertOpenFails(file, /corrupt at line 2/);
  });

  test('non-JSON file rejected', async () => {
    const file = freshFile();
    fs.writeFileSync(file, 'jobs:\n  - 1004\n');
    await assertOpenFails(file, /corrupt at line 1/);
  });

  test('JSON without header rejected', async () => {
    const file = freshFile();
    fs.writeFileSync(file, `${doneLine(`${USER}:1`, '1')}\n`);
    await assertOpenFails(file, /not an operator-telemetry state file/);
  });

  test('newer format version rejected', async () => {
    const file = freshFile();
    fs.writeFileSync(
      file,
      `${JSON.stringify({ t: 'header', format: STATE_FORMAT, version: STATE_VERSION + 1 })}\n`,
    );
    await assertOpenFails(file, new RegExp(`format version ${STATE_VERSION + 1}`));
  });

  test('empty file rejected', async () => {
    const file = freshFile();
    fs.writeFileSync(file, '');
    await assertOpenFails(file, /empty or incomplete/);
  });

  test('failed open releases lock', async () => {
    const file = freshFile();
    fs.writeFileSync(file, '');
    await assert.rejects(StateStore.open(file, logger), StateError);
    assert.equal(fs.existsSync(`${file}.lock`), false);
  });

  const malformed: Array<[string, string]> = [
    ['null record', 'null'],
    ['done without key', '{"t":"done","nonce":"1"}'],
    ['nonce not a number', `{"t":"nonce","user":"${USER}","nonce":"seven"}`],
    ['sign without revision', '{"t":"sign"}'],
    ['unknown record kind', '{"t":"merge","key":"a"}'],
    ['array record', '[1, 2]'],
  ];
  for (const [name, line] of malformed) {
    test(`${name} rejected as StateError`, async () => {
      const file = freshFile();
      fs.writeFileSync(file, `${HEADER}\n${line}\n`);
      await assertOpenFails(file, /corrupt at line 2/);
    });
  }
});

describe('state lock', () => {
  test('live owner blocks open', async () => {
    const file = freshFile();
    const sleeper = await startSleeper();
    try {
      writeLock(file, sleeper.pid);
      await assert.rejects(StateStore.open(file, logger), (error: unknown) => {
        assert.ok(
          error instanceof StateLockedError,
          `expected StateLockedError, got ${String(error)}`,
        );
        assert.match(error.message, new RegExp(`process ${sleeper.pid}`));
        return true;
      });
      const owner = JSON.parse(fs.readFileSync(`${file}.lock`, 'utf8')) as { pid: number };
      assert.equal(owner.pid, sleeper.pid);
    } finally {
      await stopSleeper(sleeper);
    }
  });

  test('dead owner taken over', async () => {
    const file = freshFile();
    writeLock(file, await deadPid());

    const store = await StateStore.open(file, logger);
    const owner = JSON.parse(fs.readFileSync(`${file}.lock`, 'utf8')) as { pid: number };
    assert.equal(owner.pid, process.pid);
    await store.close();
  });

  test('own pid lock taken over', async () => {
    // A lock with this process's pid is a previous run in the same container (PID 1).
    const file = freshFile();
    writeLock(file, process.pid);
    const store = await StateStore.open(file, logger);
    await store.close();
  });

  test('fresh lock of other host blocks', async () => {
    const file = freshFile();
    writeLock(file, 1, 'other-host.example.invalid');
    await assert.rejects(StateStore.open(file, logger), StateLockedError);
  });

  test('stale lock of other host taken over', async () => {
    const file = freshFile();
    writeLock(file, 1, 'other-host.example.invalid');
    const twoMinutesAgo = new Date(Date.now() - 120_000);
    fs.utimesSync(`${file}.lock`, twoMinutesAgo, twoMinutesAgo);

    const store = await StateStore.open(file, logger);
    await store.close();
  });

  test('unreadable lock taken over', async () => {
    const file = freshFile();
    fs.writeFileSync(`${file}.lock`, 'not json');
    const store = await StateStore.open(file, logger);
    await store.close();
  });
});

describe('state compaction', () => {
  test('compaction keeps every record', async () => {
    const file = freshFile();
    const users = [USER, '0x6ED55d052B4b32a70dE777219dD6920084A8B3b6'];
    const jobsPerUser = 100;
    const revisions = 60;

    const store = await StateStore.open(file, logger);
    const writes: Array<Promise<void>> = [];
    for (let revision = 1; revision <= revisions; revision += 1) {
      for (const [userIndex, user] of users.entries()) {
        for (let job = 0; job < jobsPerUser; job += 1) {
          const nonce = (revision - 1) * jobsPerUser + job + 1;
          writes.push(
            store.recordDone(revisionKey(user, BigInt(job)), {
              lastUpdatedMs: revision,
              fingerprint: `r${revision}-u${userIndex}`,
              nonce: String(nonce),
            }),
          );
        }
      }
    }
    await Promise.all(writes);
    await store.close();

    // Without compaction the 12 000 appended lines of about 120 bytes would make 1.4 MB.
    const lines = fs.readFileSync(file, 'utf8').split('\n').length - 1;
    assert.ok(
      lines < 2 * (1 + users.length + users.length * jobsPerUser) + 10_000,
      `${lines} lines`,
    );
    assert.ok(fs.statSync(file).size < 1_000_000, `${fs.statSync(file).size} bytes`);

    const reopened = await StateStore.open(file, logger);
    assert.equal(reopened.doneCount(), users.length * jobsPerUser);
    for (const [userIndex, user] of users.entries()) {
      assert.equal(reopened.lastNonce(user), BigInt(revisions * jobsPerUser));
      for (let job = 0; job < jobsPerUser; job += 1) {
        const done = reopened.done(revisionKey(user, BigInt(job)));
        assert.equal(done?.lastUpdatedMs, revisions);
        assert.equal(done?.fingerprint, `r${revisions}-u${userIndex}`);
      }
    }
    await reopened.close();
  });

  test('bloated file compacted at open', async () => {
    const file = freshFile();
    const key = revisionKey(USER, 1n);
    const lines = [HEADER];
    for (let nonce = 1; nonce <= 10_500; nonce += 1) lines.push(doneLine(key, String(nonce)));
    fs.writeFileSync(file, `${lines.join('\n')}\n`);

    const store = await StateStore.open(file, logger);
    assert.equal(store.done(key)?.nonce, '10500');
    assert.equal(store.lastNonce(USER), 10_500n);
    await store.close();

    const linesAfterOpen = fs.readFileSync(file, 'utf8').trimEnd().split('\n');
    assert.equal(linesAfterOpen.length, 3, 'header, nonce and one done record');
  });

  test('short journal kept at open', async () => {
    // The history of a job stays in the file for `status` until the journal is bloated.
    const file = freshFile();
    const key = revisionKey(USER, 1n);
    const lines = [HEADER];
    for (let nonce = 1; nonce <= 500; nonce += 1) lines.push(doneLine(key, String(nonce)));
    const text = `${lines.join('\n')}\n`;
    fs.writeFileSync(file, text);

    const store = await StateStore.open(file, logger);
    await store.recordDone(key, { lastUpdatedMs: 2, fingerprint: 'g', nonce: '501' });
    await store.close();

    const after = fs.readFileSync(file, 'utf8');
    assert.ok(after.startsWith(text));
    assert.equal(after.split('\n').length - 1, 502);
  });
});

describe('file mode', () => {
  test('existing state file made private', async () => {
    const file = freshFile();
    fs.writeFileSync(file, `${HEADER}\n`, { mode: 0o644 });
    fs.chmodSync(file, 0o644);
    const store = await StateStore.open(file, logger);
    await store.close();
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
  });
});
