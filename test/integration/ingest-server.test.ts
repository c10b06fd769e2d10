import { test } from 'node:test';
import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { Signature, Wallet, keccak256 } from 'ethers';
import type { BaseWallet, TypedDataDomain, TypedDataField } from 'ethers';
import { startIngestServer } from '../support/ingest-server';
import type { IngestServer, IngestServerOptions } from '../support/ingest-server';

const NOW_SEC = 1_700_000_000;
const SECP256K1_ORDER = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;

const signer = Wallet.createRandom();
const user = Wallet.createRandom().address;

const domain: TypedDataDomain = {
  name: 'EnergyOracle',
  version: '1',
  chainId: 31337n,
  verifyingContract: Wallet.createRandom().address,
};

// Written out again here, not imported, so a wrong type in the server fails these tests.
const types: Record<string, TypedDataField[]> = {
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

interface Submission {
  attestation: Record<string, string>;
  signature: string;
}

interface HttpReply {
  status: number;
  headers: Headers;
  text: string;
}

function makeAttestation(overrides: Record<string, string> = {}): Record<string, string> {
  return {
    jobId: '7',
    user,
    energy: '-1250',
    degeneracy: '2',
    epochId: '3',
    role: '1',
    nonce: '1',
    deadline: String(NOW_SEC + 600),
    uPre: '100',
    uPost: '90',
    value: '5',
    ...overrides,
  };
}

async function makeSubmission(
  overrides: Record<string, string> = {},
  wallet: BaseWallet = signer,
  signingDomain: TypedDataDomain = domain,
): Promise<Submission> {
  const attestation = makeAttestation(overrides);
  const signature = await wallet.signTypedData(signingDomain, types, attestation);
  return { attestation, signature };
}

async function startServer(
  t: TestContext,
  overrides: Partial<IngestServerOptions> = {},
): Promise<IngestServer> {
  const server = await startIngestServer({
    chainId: 31337n,
    verifyingContract: String(domain.verifyingContract),
    signers: [signer.address],
    now: () => NOW_SEC,
    ...overrides,
  });
  t.after(() => server.close());
  return server;
}

async function post(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
  signal?: AbortSignal,
): Promise<HttpReply> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal,
  });
  return { status: response.status, headers: response.headers, text: await response.text() };
}

function errorOf(response: HttpReply): string {
  const body = JSON.parse(response.text) as { error?: unknown };
  assert.equal(typeof body.error, 'string', `expected a JSON error body, got ${response.text}`);
  return String(body.error);
}

async function waitFor(condition: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    assert.ok(Date.now() < deadline, `condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Returns the signature with s replaced by n - s and v flipped, which recovers the same signer. */
function withHighS(signature: string): string {
  const parsed = Signature.from(signature);
  const highS = SECP256K1_ORDER - BigInt(parsed.s);
  const v = parsed.v === 27 ? '1c' : '1b';
  return parsed.r + highS.toString(16).padStart(64, '0') + v;
}

test('accepts a signed attestation', async (t) => {
  const server = await startServer(t);
  const submission = await makeSubmission();

  const response = await post(server.url, submission, { 'idempotency-key': 'key-1' });

  assert.equal(response.status, 201);
  assert.deepEqual(JSON.parse(response.text), {
    id: 'att-1',
    reference: keccak256(submission.signature),
  });
  assert.equal(server.accepted.length, 1);
  assert.equal(server.accepted[0]?.signer, signer.address);
  assert.equal(server.accepted[0]?.idempotencyKey, 'key-1');
  assert.deepEqual(server.accepted[0]?.attestation, submission.attestation);
  assert.equal(server.lastNonce(user), 1n);
  assert.equal(server.lastNonce(user.toLowerCase()), 1n);
  assert.deepEqual(
    server.requests.map(({ status, idempotencyKey, user, nonce }) => ({
      status,
      idempotencyKey,
      user,
      nonce,
    })),
    [{ status: 201, idempotencyKey: 'key-1', user, nonce: '1' }],
  );
});

test('replays the first reply for a repeated key', async (t) => {
  const server = await startServer(t);
  const first = await post(server.url, await makeSubmission(), { 'idempotency-key': 'key-1' });

  const again = await post(server.url, await makeSubmission(), { 'idempotency-key': 'key-1' });
  const newer = await makeSubmission({ nonce: '2' });
  const changed = await post(server.url, newer, { 'idempotency-key': 'key-1' });

  assert.equal(first.status, 201);
  assert.equal(again.status, first.status);
  assert.equal(again.text, first.text);
  assert.equal(changed.status, first.status);
  assert.equal(changed.text, first.text);
  assert.equal(server.accepted.length, 1);
  assert.equal(server.lastNonce(user), 1n);
  assert.deepEqual(
    server.requests.map((request) => request.status),
    [201, 201, 201],
  );
});

test('processes a retry after a rejection', async (t) => {
  const server = await startServer(t, { signers: [] });
  const submission = await makeSubmission();

  const rejected = await post(server.url, submission, { 'idempotency-key': 'key-1' });
  server.setSigners([signer.address.toLowerCase()]);
  const retried = await post(server.url, submission, { 'idempotency-key': 'key-1' });

  assert.equal(rejected.status, 403);
  assert.equal(retried.status, 201);
  assert.equal(server.accepted.length, 1);
});

test('rejects a missing or wrong token', async (t) => {
  const server = await startServer(t, { token: 'secret-token' });
  const submission = await makeSubmission();

  const missing = await post(server.url, submission);
  const wrong = await post(server.url, submission, { authorization: 'Bearer other-token' });
  const right = await post(server.url, submission, { authorization: 'Bearer secret-token' });

  assert.equal(missing.status, 401);
  assert.equal(missing.headers.get('www-authenticate'), 'Bearer');
  assert.match(errorOf(missing), /bearer token/);
  assert.equal(wrong.status, 401);
  assert.equal(right.status, 201);
  assert.equal(server.accepted.length, 1);
});

test('rejects other paths and methods', async (t) => {
  const server = await startServer(t);
  const otherPath = new URL('/other', server.url).toString();

  const notFound = await post(otherPath, await makeSubmission());
  const wrongMethod = await fetch(server.url);

  assert.equal(notFound.status, 404);
  assert.match(errorOf(notFound), /path \/other not found/);
  assert.equal(wrongMethod.status, 405);
  assert.equal(wrongMethod.headers.get('allow'), 'POST');
  await wrongMethod.text();
  assert.equal(server.accepted.length, 0);
});

test('rejects malformed bodies with 400', async (t) => {
  const server = await startServer(t);
  const valid = await makeSubmission();
  const withField = (name: string, value: unknown): unknown => ({
    ...valid,
    attestation: { ...valid.attestation, [name]: value },
  });
  const { value: _omitted, ...withoutValue } = valid.attestation;

  const cases: Array<[string, unknown, RegExp]> = [
    ['invalid JSON', '{"attestation":', /not valid JSON/],
    ['array body', [valid], /JSON object/],
    ['missing signature', { attestation: valid.attestation }, /missing signature/],
    ['unknown top-level field', { ...valid, extra: '1' }, /unknown fields extra/],
    ['missing attestation field', { ...valid, attestation: withoutValue }, /missing value/],
    ['unknown attestation field', withField('chainId', '1'), /unknown fields chainId/],
    ['number instead of string', withField('jobId', 7), /jobId must be a string/],
    ['fraction', withField('energy', '1.5'), /energy must be a decimal integer/],
    ['leading zero', withField('nonce', '01'), /nonce must be a decimal integer/],
    ['hex integer', withField('value', '0x10'), /value must be a decimal integer/],
    ['negative unsigned', withField('uPre', '-1'), /uPre is out of range for uint256/],
    ['role above 255', withField('role', '256'), /role is out of range for uint8/],
    ['energy above int256', withField('energy', String(2n ** 255n)), /out of range for int256/],
    ['lowercase user', withField('user', user.toLowerCase()), /EIP-55 checksummed/],
    ['not an address', withField('user', '0x1234'), /must be an address/],
    ['short signature', { ...valid, signature: '0x1234' }, /65 bytes/],
    ['v of 0', { ...valid, signature: valid.signature.slice(0, -2) + '00' }, /v must be 27/],
    ['high s', { ...valid, signature: withHighS(valid.signature) }, /high s value/],
  ];

  for (const [name, body, expected] of cases) {
    const response = await post(server.url, body);
    assert.equal(response.status, 400, `${name}: ${response.text}`);
    assert.match(errorOf(response), expected, name);
  }
  assert.equal(server.accepted.length, 0);
});

test('accepts the minimum int256 energy', async (t) => {
  const server = await startServer(t);
  const minimum = String(-(2n ** 255n));

  const response = await post(server.url, await makeSubmission({ energy: minimum }));

  assert.equal(response.status, 201);
  assert.equal(server.accepted[0]?.attestation.energy, minimum);
});

test('rejects a body over 64 KiB with 413', async (t) => {
  const server = await startServer(t);
  const body = JSON.stringify({ padding: 'x'.repeat(65 * 1024) });

  const response = await post(server.url, body);

  assert.equal(response.status, 413);
  assert.match(errorOf(response), /larger than 65536 bytes/);
});

test('rejects an unauthorised signer with 403', async (t) => {
  const server = await startServer(t);
  const stranger = Wallet.createRandom();

  const response = await post(server.url, await makeSubmission({}, stranger));
  const otherChain = await makeSubmission({}, signer, { ...domain, chainId: 1n });
  const wrongDomain = await post(server.url, otherChain);

  assert.equal(response.status, 403);
  assert.match(errorOf(response), new RegExp(`signer ${stranger.address} is not authorised`));
  assert.equal(wrongDomain.status, 403);
  assert.equal(server.accepted.length, 0);
});

test('rejects a nonce not above the last with 409', async (t) => {
  const server = await startServer(t);
  const otherUser = Wallet.createRandom().address;

  const statuses: number[] = [];
  for (const nonce of ['0', '2', '2', '1', '3']) {
    const response = await post(server.url, await makeSubmission({ nonce }));
    statuses.push(response.status);
  }
  const firstOfOtherUser = await post(
    server.url,
    await makeSubmission({ user: otherUser, nonce: '1' }),
  );

  assert.deepEqual(statuses, [409, 201, 409, 409, 201]);
  assert.equal(server.lastNonce(user), 3n);
  assert.equal(firstOfOtherUser.status, 201);
  assert.equal(server.lastNonce(otherUser), 1n);
});

test('rejects an expired deadline with 422', async (t) => {
  const server = await startServer(t);

  const expired = await post(server.url, await makeSubmission({ deadline: String(NOW_SEC - 1) }));
  const current = await post(server.url, await makeSubmission({ deadline: String(NOW_SEC) }));

  assert.equal(expired.status, 422);
  assert.match(errorOf(expired), /deadline .* has passed/);
  assert.equal(current.status, 201);
  assert.equal(server.accepted.length, 1);
});

test('throttles with 429 and Retry-After', async (t) => {
  const server = await startServer(t, { faults: { throttleRate: 1, throttleRetryAfterSec: 7 } });
  const submission = await makeSubmission();

  const throttled = await post(server.url, submission);
  server.setFaults({});
  const retried = await post(server.url, submission);

  assert.equal(throttled.status, 429);
  assert.equal(throttled.headers.get('retry-after'), '7');
  assert.equal(retried.status, 201);
  assert.equal(server.accepted.length, 1);
  assert.deepEqual(
    server.requests.map((request) => request.status),
    [429, 201],
  );
});

test('injects 500 and 503 before processing', async (t) => {
  const server = await startServer(t, { faults: { errorRate: 1 } });
  const submission = await makeSubmission();

  const first = await post(server.url, submission);
  const second = await post(server.url, submission);

  assert.equal(first.status, 500);
  assert.equal(second.status, 503);
  assert.equal(server.accepted.length, 0);
  assert.equal(server.lastNonce(user), 0n);
});

test('resets the socket before processing', async (t) => {
  const server = await startServer(t, { faults: { resetRate: 1 } });

  await assert.rejects(post(server.url, await makeSubmission()), TypeError);

  assert.equal(server.accepted.length, 0);
  assert.deepEqual(
    server.requests.map((request) => request.status),
    ['reset'],
  );
});

test('records acceptance before a failed reply', async (t) => {
  const server = await startServer(t, { faults: { acceptThenFailRate: 1 } });
  const first = await makeSubmission({ nonce: '1' });
  const second = await makeSubmission({ nonce: '2' });

  const failed = await post(server.url, first, { 'idempotency-key': 'key-1' });
  await assert.rejects(post(server.url, second, { 'idempotency-key': 'key-2' }), TypeError);

  assert.equal(failed.status, 500);
  assert.equal(server.accepted.length, 2);
  assert.equal(server.lastNonce(user), 2n);
  assert.deepEqual(
    server.requests.map((request) => request.status),
    [500, 'reset'],
  );

  server.setFaults({});
  const firstRetry = await post(server.url, first, { 'idempotency-key': 'key-1' });
  const secondRetry = await post(server.url, second, { 'idempotency-key': 'key-2' });

  assert.equal(firstRetry.status, 201);
  assert.equal(JSON.parse(firstRetry.text).id, 'att-1');
  assert.equal(secondRetry.status, 201);
  assert.equal(JSON.parse(secondRetry.text).id, 'att-2');
  assert.equal(server.accepted.length, 2);
});

test('leaves a hanging request unanswered', async (t) => {
  const server = await startServer(t, { faults: { hangRate: 1 } });
  const submission = await makeSubmission();

  const timedOut = post(server.url, submission, {}, AbortSignal.timeout(200));
  await assert.rejects(timedOut, { name: 'TimeoutError' });

  const pending = post(server.url, submission);
  await waitFor(() => server.requests.length === 2);
  await server.close();
  await assert.rejects(pending, TypeError);

  assert.equal(server.accepted.length, 0);
  assert.deepEqual(
    server.requests.map((request) => request.status),
    ['hang', 'hang'],
  );
});

test('draws the same faults after reseeding', async (t) => {
  const faults = { seed: 42, errorRate: 0.5 };
  const server = await startServer(t, { faults });

  const runStatuses = async (firstNonce: number): Promise<number[]> => {
    const statuses: number[] = [];
    for (let i = 0; i < 12; i += 1) {
      const submission = await makeSubmission({ nonce: String(firstNonce + i) });
      statuses.push((await post(server.url, submission)).status);
    }
    return statuses;
  };

  const firstRun = await runStatuses(1);
  server.setFaults(faults);
  const secondRun = await runStatuses(100);

  assert.deepEqual(secondRun, firstRun);
  assert.ok(firstRun.includes(201), `no request got through: ${firstRun.join(', ')}`);
  assert.ok(firstRun.includes(500), `no fault was injected: ${firstRun.join(', ')}`);
});

test('delays every answer by latencyMs', async (t) => {
  const server = await startServer(t, { faults: { latencyMs: 150 } });
  const submission = await makeSubmission();

  const startedAt = Date.now();
  const response = await post(server.url, submission);
  const elapsedMs = Date.now() - startedAt;

  assert.equal(response.status, 201);
  // Timers may fire a millisecond early relative to Date.now().
  assert.ok(elapsedMs >= 145, `answered after ${elapsedMs} ms`);
});

test('rejects invalid fault options', async (t) => {
  const server = await startServer(t);

  assert.throws(() => server.setFaults({ errorRate: 1.5 }), RangeError);
  assert.throws(() => server.setFaults({ throttleRetryAfterSec: 0.5 }), RangeError);
  await assert.rejects(
    startIngestServer({
      chainId: 1n,
      verifyingContract: String(domain.verifyingContract),
      signers: [],
      faults: { hangRate: -1 },
    }),
    RangeError,
  );
});
