/**
 * Test double of the attestation ingestion API: a real HTTP server on 127.0.0.1 that checks
 * each signed attestation with the rules of the EnergyOracle contract and can inject faults
 * (errors, throttling, hangs, resets, lost responses) from a seeded PRNG.
 */
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { getAddress, getBytes, isAddress, keccak256, verifyTypedData } from 'ethers';
import type { TypedDataDomain, TypedDataField } from 'ethers';

export interface IngestServerOptions {
  /** EIP-712 domain chainId. */
  chainId: bigint;
  /** EIP-712 domain verifyingContract, the oracle address. */
  verifyingContract: string;
  /** Authorised signer addresses, in any letter case. */
  signers: string[];
  /** Bearer token. When set, requests without `authorization: Bearer <token>` get 401. */
  token?: string;
  /** Port on 127.0.0.1. Default 0, which picks a free port. */
  port?: number;
  /** Initial faults, default none. `setFaults` replaces them at run time. */
  faults?: FaultOptions;
  /** Clock in seconds for the deadline check. Default `Date.now() / 1000`. */
  now?: () => number;
}

/**
 * Fault rates are probabilities in [0, 1]. One PRNG draw per request picks at most one
 * fault. The rates fill consecutive slices of [0, 1) in the order error, throttle, hang,
 * reset, acceptThenFail, so any part of their sum above 1 is never drawn. Requests rejected
 * with 404, 405, 401 or 413 come before the draw, so they get no fault and use no draw.
 */
export interface FaultOptions {
  /** Seed of the mulberry32 PRNG, default 1. */
  seed?: number;
  /** Rate of 500 and 503 responses, sent before processing and alternating from 500. */
  errorRate?: number;
  /** Rate of 429 responses sent before processing. */
  throttleRate?: number;
  /** `Retry-After` header of a 429 response in whole seconds, default 1. */
  throttleRetryAfterSec?: number;
  /**
   * Rate of requests left without a response. The socket stays open until the client or
   * `close()` ends it.
   */
  hangRate?: number;
  /** Rate of sockets reset (TCP RST) without a response, before processing. */
  resetRate?: number;
  /**
   * Rate of requests that are processed and, if accepted, get a 500 or a socket reset
   * instead of the 201, alternating from 500. The acceptance stays recorded, and a retry
   * with the same Idempotency-Key gets the 201.
   */
  acceptThenFailRate?: number;
  /** Delay before every response or reset in ms, default 0. */
  latencyMs?: number;
}

export interface AcceptedRecord {
  idempotencyKey: string | undefined;
  /** Attestation fields as received, all decimal strings except the checksummed `user`. */
  attestation: Record<string, string>;
  signature: string;
  /** Recovered signer, checksummed. */
  signer: string;
  /** Id returned to the client, `att-<n>` with n counting from 1. */
  id: string;
  /** Wall-clock time of acceptance, in ms since the Unix epoch. */
  receivedAt: number;
}

export interface IngestRequestRecord {
  /** Arrival time in ms since the Unix epoch, from the system clock and not from `now`. */
  at: number;
  status: number | 'hang' | 'reset';
  idempotencyKey?: string;
  /** `attestation.user` and `attestation.nonce` when the body contained them as strings. */
  user?: string;
  nonce?: string;
}

export interface IngestServer {
  /** Attestation endpoint, `http://127.0.0.1:<port>/attestations`. */
  url: string;
  /** Accepted attestations, in acceptance order. */
  accepted: AcceptedRecord[];
  /**
   * Every request, faulted ones included, in the order their outcome was decided. A request
   * whose client closed the connection before the whole body arrived is not recorded.
   */
  requests: IngestRequestRecord[];
  /** Returns the last accepted nonce of `user`, 0 when none. Throws if `user` is not an address. */
  lastNonce(user: string): bigint;
  /** Replaces all fault options and restarts the PRNG from their seed. */
  setFaults(faults: FaultOptions): void;
  setSigners(addresses: string[]): void;
  /** Stops the server and destroys every open socket, hanging ones included. */
  close(): Promise<void>;
}

const ATTESTATION_PATH = '/attestations';
const MAX_BODY_BYTES = 64 * 1024;
const DEFAULT_FAULT_SEED = 1;
const DEFAULT_RETRY_AFTER_SEC = 1;

const ATTESTATION_FIELDS = [
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
] as const;

type AttestationField = (typeof ATTESTATION_FIELDS)[number];
type AttestationFields = Record<AttestationField['name'], string>;

const ATTESTATION_TYPES: Record<string, TypedDataField[]> = {
  EnergyAttestation: ATTESTATION_FIELDS.map(({ name, type }) => ({ name, type })),
};

// Half the order of secp256k1. OpenZeppelin's ECDSA.recover (v5.7) rejects larger s values as
// malleable, but ethers v6 accepts some of them, so the server checks s itself.
const SECP256K1_HALF_ORDER = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0n;

const CANONICAL_INTEGER = /^-?(0|[1-9][0-9]*)$/;

interface Reply {
  status: number;
  body: Record<string, string>;
  headers?: Record<string, string>;
}

type Outcome = { kind: 'reply'; reply: Reply } | { kind: 'hang' } | { kind: 'reset' };

interface Submission {
  attestation: AttestationFields;
  signature: string;
}

type Parsed<T> = { ok: true; value: T } | { ok: false; error: string };

function errorReply(status: number, error: string, headers?: Record<string, string>): Reply {
  return { status, body: { error }, headers };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

// ---------------------------------------------------------------------------------------------
// Body validation. These functions do no I/O and return a parsed value or an error message.

function checkKeys(
  label: string,
  object: Record<string, unknown>,
  expected: readonly string[],
): string | undefined {
  const missing = expected.filter((key) => !(key in object));
  if (missing.length > 0) {
    return `${label} is missing ${missing.join(', ')}`;
  }

  const unknown = Object.keys(object).filter((key) => !expected.includes(key));
  if (unknown.length > 0) {
    return `${label} has unknown fields ${unknown.join(', ')}`;
  }
  return undefined;
}

function integerRange(solidityType: string): { min: bigint; max: bigint } {
  const match = /^(u?)int([0-9]+)$/.exec(solidityType);
  if (match === null) {
    throw new Error(`no integer range for Solidity type ${solidityType}`);
  }

  const bits = BigInt(match[2] ?? '256');
  if (match[1] === 'u') {
    return { min: 0n, max: (1n << bits) - 1n };
  }
  return { min: -(1n << (bits - 1n)), max: (1n << (bits - 1n)) - 1n };
}

function validateInteger(name: string, solidityType: string, value: string): string | undefined {
  if (!CANONICAL_INTEGER.test(value) || value === '-0') {
    const quoted = JSON.stringify(value);
    return `attestation.${name} must be a decimal integer without leading zeros, got ${quoted}`;
  }

  const { min, max } = integerRange(solidityType);
  const parsed = BigInt(value);
  if (parsed < min || parsed > max) {
    return `attestation.${name} is out of range for ${solidityType}: ${value}`;
  }
  return undefined;
}

function validateChecksummedAddress(name: string, value: string): string | undefined {
  if (!isAddress(value)) {
    return `attestation.${name} must be an address, got ${JSON.stringify(value)}`;
  }

  const checksummed = getAddress(value);
  if (checksummed !== value) {
    return `attestation.${name} must be EIP-55 checksummed, expected ${checksummed}`;
  }
  return undefined;
}

function parseField(field: AttestationField, value: unknown): Parsed<string> {
  if (typeof value !== 'string') {
    return { ok: false, error: `attestation.${field.name} must be a string, got ${typeof value}` };
  }

  const error =
    field.type === 'address'
      ? validateChecksummedAddress(field.name, value)
      : validateInteger(field.name, field.type, value);
  return error === undefined ? { ok: true, value } : { ok: false, error };
}

/**
 * Parses the 65-byte r, s, v encoding that OpenZeppelin's ECDSA.recover (v5.7) accepts.
 * NOTE: this assumes the EnergyOracle contract recovers signers with that library.
 */
function parseSignature(signature: unknown): Parsed<string> {
  if (typeof signature !== 'string' || !/^0x[0-9a-fA-F]{130}$/.test(signature)) {
    return { ok: false, error: 'signature must be 65 bytes as 0x-prefixed hex (r, s, v)' };
  }

  const s = BigInt('0x' + signature.slice(66, 130));
  if (s > SECP256K1_HALF_ORDER) {
    const error = 'signature has a high s value, which the contract rejects as malleable';
    return { ok: false, error };
  }

  const v = getBytes(signature)[64];
  if (v !== 27 && v !== 28) {
    return { ok: false, error: `signature v must be 27 or 28, got ${String(v)}` };
  }
  return { ok: true, value: signature };
}

function parseAttestation(value: unknown): Parsed<AttestationFields> {
  if (!isPlainObject(value)) {
    return { ok: false, error: 'attestation must be a JSON object' };
  }

  const names = ATTESTATION_FIELDS.map((field) => field.name);
  const keyError = checkKeys('attestation', value, names);
  if (keyError !== undefined) {
    return { ok: false, error: keyError };
  }

  const attestation: Partial<AttestationFields> = {};
  for (const field of ATTESTATION_FIELDS) {
    const parsed = parseField(field, value[field.name]);
    if (!parsed.ok) {
      return parsed;
    }
    attestation[field.name] = parsed.value;
  }
  // The loop above assigned every field.
  return { ok: true, value: attestation as AttestationFields };
}

function parseSubmission(body: unknown): Parsed<Submission> {
  if (!isPlainObject(body)) {
    return { ok: false, error: 'body must be a JSON object with attestation and signature' };
  }

  const keyError = checkKeys('body', body, ['attestation', 'signature']);
  if (keyError !== undefined) {
    return { ok: false, error: keyError };
  }

  const attestation = parseAttestation(body.attestation);
  if (!attestation.ok) {
    return attestation;
  }

  const signature = parseSignature(body.signature);
  if (!signature.ok) {
    return signature;
  }
  return { ok: true, value: { attestation: attestation.value, signature: signature.value } };
}

function toTypedValue(attestation: AttestationFields): Record<string, string | bigint> {
  const typed: Record<string, string | bigint> = {};
  for (const field of ATTESTATION_FIELDS) {
    const value = attestation[field.name];
    typed[field.name] = field.type === 'address' ? value : BigInt(value);
  }
  return typed;
}

function recoverSigner(domain: TypedDataDomain, submission: Submission): Parsed<string> {
  try {
    const typedValue = toTypedValue(submission.attestation);
    const signer = verifyTypedData(domain, ATTESTATION_TYPES, typedValue, submission.signature);
    return { ok: true, value: signer };
  } catch (err) {
    // ethers throws when no public key matches r, s and v. ecrecover returns the zero address
    // for those, which ECDSA.recover turns into a revert.
    return { ok: false, error: `signature is invalid: ${(err as Error).message}` };
  }
}

// ---------------------------------------------------------------------------------------------
// The ledger applies the contract's rules and stores the state they depend on.

class AttestationLedger {
  readonly accepted: AcceptedRecord[] = [];
  private readonly lastNonces = new Map<string, bigint>();
  private readonly successReplies = new Map<string, Reply>();
  private signers = new Set<string>();

  constructor(
    private readonly domain: TypedDataDomain,
    signers: string[],
    private readonly now: () => number,
  ) {
    this.setSigners(signers);
  }

  setSigners(addresses: string[]): void {
    this.signers = new Set(addresses.map((address) => getAddress(address)));
  }

  lastNonce(user: string): bigint {
    return this.lastNonces.get(getAddress(user)) ?? 0n;
  }

  /**
   * Applies the rules to a parsed JSON body. Processing is synchronous, so two concurrent
   * requests with one Idempotency-Key or nonce cannot both be accepted.
   */
  submit(body: unknown, idempotencyKey: string | undefined): { reply: Reply; accepted: boolean } {
    const submission = parseSubmission(body);
    if (!submission.ok) {
      return { reply: errorReply(400, submission.error), accepted: false };
    }

    const remembered =
      idempotencyKey === undefined ? undefined : this.successReplies.get(idempotencyKey);
    if (remembered !== undefined) {
      return { reply: remembered, accepted: false };
    }

    const signer = this.checkRules(submission.value);
    if (!signer.ok) {
      return { reply: signer.rejection, accepted: false };
    }

    const reply = this.accept(submission.value, signer.value, idempotencyKey);
    return { reply, accepted: true };
  }

  /** Returns the recovered signer when the submission passes every rule, else the rejection. */
  private checkRules(
    submission: Submission,
  ): { ok: true; value: string } | { ok: false; rejection: Reply } {
    const signer = recoverSigner(this.domain, submission);
    if (!signer.ok) {
      return { ok: false, rejection: errorReply(400, signer.error) };
    }
    if (!this.signers.has(signer.value)) {
      return { ok: false, rejection: errorReply(403, `signer ${signer.value} is not authorised`) };
    }

    const { user, nonce, deadline } = submission.attestation;
    // Block timestamps are whole seconds, so a deadline equal to the current second is valid.
    const nowSec = BigInt(Math.floor(this.now()));
    if (BigInt(deadline) < nowSec) {
      const message = `deadline ${deadline} has passed (now ${nowSec})`;
      return { ok: false, rejection: errorReply(422, message) };
    }

    const last = this.lastNonce(user);
    if (BigInt(nonce) <= last) {
      const message = `nonce ${nonce} must be greater than the last nonce ${last} of ${user}`;
      return { ok: false, rejection: errorReply(409, message) };
    }
    return signer;
  }

  private accept(
    submission: Submission,
    signer: string,
    idempotencyKey: string | undefined,
  ): Reply {
    const { user, nonce } = submission.attestation;
    this.lastNonces.set(user, BigInt(nonce));

    const id = `att-${this.accepted.length + 1}`;
    this.accepted.push({
      idempotencyKey,
      attestation: submission.attestation,
      signature: submission.signature,
      signer,
      id,
      receivedAt: Date.now(),
    });

    const reply: Reply = { status: 201, body: { id, reference: keccak256(submission.signature) } };
    if (idempotencyKey !== undefined) {
      this.successReplies.set(idempotencyKey, reply);
    }
    return reply;
  }
}

// ---------------------------------------------------------------------------------------------
// Fault injection.

type FaultKind = 'error' | 'throttle' | 'hang' | 'reset' | 'acceptThenFail';

const FAULT_RATES: ReadonlyArray<[FaultKind, keyof FaultOptions]> = [
  ['error', 'errorRate'],
  ['throttle', 'throttleRate'],
  ['hang', 'hangRate'],
  ['reset', 'resetRate'],
  ['acceptThenFail', 'acceptThenFailRate'],
];

/** Creates a mulberry32 PRNG, which has a 32-bit state and returns floats in [0, 1). */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function validateFaultOptions(faults: FaultOptions): void {
  for (const [, option] of FAULT_RATES) {
    const rate = faults[option];
    if (rate !== undefined && !(rate >= 0 && rate <= 1)) {
      throw new RangeError(`fault option ${option} must be between 0 and 1, got ${rate}`);
    }
  }
  if (faults.latencyMs !== undefined && !(faults.latencyMs >= 0)) {
    throw new RangeError(`fault option latencyMs must be 0 or more, got ${faults.latencyMs}`);
  }

  const retryAfterSec = faults.throttleRetryAfterSec;
  if (retryAfterSec !== undefined && !(Number.isInteger(retryAfterSec) && retryAfterSec >= 0)) {
    throw new RangeError(
      `fault option throttleRetryAfterSec must be a whole number of seconds, got ${retryAfterSec}`,
    );
  }
}

class FaultInjector {
  private faults: FaultOptions = {};
  private random: () => number = mulberry32(DEFAULT_FAULT_SEED);
  private errorCount = 0;
  private acceptThenFailCount = 0;

  constructor(faults: FaultOptions) {
    this.set(faults);
  }

  set(faults: FaultOptions): void {
    validateFaultOptions(faults);
    this.faults = { ...faults };
    this.random = mulberry32(faults.seed ?? DEFAULT_FAULT_SEED);
    this.errorCount = 0;
    this.acceptThenFailCount = 0;
  }

  get latencyMs(): number {
    return this.faults.latencyMs ?? 0;
  }

  /** Draws the fault of one request, or undefined for none. */
  draw(): FaultKind | undefined {
    const sample = this.random();
    let upperBound = 0;
    for (const [kind, option] of FAULT_RATES) {
      upperBound += this.faults[option] ?? 0;
      if (sample < upperBound) {
        return kind;
      }
    }
    return undefined;
  }

  /** Returns the outcome of a fault drawn before processing, or undefined to go on processing. */
  beforeProcessing(kind: FaultKind | undefined): Outcome | undefined {
    switch (kind) {
      case 'error': {
        this.errorCount += 1;
        const status = this.errorCount % 2 === 1 ? 500 : 503;
        return { kind: 'reply', reply: errorReply(status, `injected fault: ${status}`) };
      }
      case 'throttle': {
        const retryAfterSec = this.faults.throttleRetryAfterSec ?? DEFAULT_RETRY_AFTER_SEC;
        const reply = errorReply(429, 'injected fault: rate limited', {
          'retry-after': String(retryAfterSec),
        });
        return { kind: 'reply', reply };
      }
      case 'hang':
        return { kind: 'hang' };
      case 'reset':
        return { kind: 'reset' };
      default:
        return undefined;
    }
  }

  /** Returns the outcome that replaces the 201 of an accepted attestation. */
  afterAcceptance(): Outcome {
    this.acceptThenFailCount += 1;
    if (this.acceptThenFailCount % 2 === 1) {
      return { kind: 'reply', reply: errorReply(500, 'injected fault: 500 after acceptance') };
    }
    return { kind: 'reset' };
  }
}

// ---------------------------------------------------------------------------------------------
// HTTP layer.

const INVALID_JSON = Symbol('invalid JSON');

type BodyResult = Buffer | 'too-large' | 'aborted';

function readBody(req: IncomingMessage, maxBytes: number): Promise<BodyResult> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;

    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > maxBytes) {
        // Node drains the rest of the body once the 413 is sent, so keep-alive still works.
        req.off('data', onData);
        resolve('too-large');
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('close', () => resolve('aborted'));
  });
}

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8')) as unknown;
  } catch {
    return INVALID_JSON;
  }
}

function describeBody(json: unknown): Pick<IngestRequestRecord, 'user' | 'nonce'> {
  if (!isPlainObject(json) || !isPlainObject(json.attestation)) {
    return {};
  }

  const { user, nonce } = json.attestation;
  return {
    user: typeof user === 'string' ? user : undefined,
    nonce: typeof nonce === 'string' ? nonce : undefined,
  };
}

function headerValue(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return typeof value === 'string' ? value : undefined;
}

function checkRoute(req: IncomingMessage): Reply | undefined {
  const { pathname } = new URL(req.url ?? '/', 'http://127.0.0.1');
  if (pathname !== ATTESTATION_PATH) {
    return errorReply(404, `path ${pathname} not found. Send attestations to ${ATTESTATION_PATH}`);
  }
  if (req.method !== 'POST') {
    const message = `method ${req.method ?? ''} is not allowed. Use POST`;
    return errorReply(405, message, { allow: 'POST' });
  }
  return undefined;
}

function checkToken(req: IncomingMessage, token: string | undefined): Reply | undefined {
  if (token === undefined) {
    return undefined;
  }

  const match = /^Bearer +(.+)$/i.exec(headerValue(req, 'authorization') ?? '');
  if (match?.[1] !== token) {
    const headers = { 'www-authenticate': 'Bearer' };
    return errorReply(401, 'missing or invalid bearer token in the Authorization header', headers);
  }
  return undefined;
}

interface Decision {
  outcome: Outcome;
  details: Pick<IngestRequestRecord, 'user' | 'nonce'>;
}

class IngestHttpServer {
  readonly accepted: AcceptedRecord[];
  readonly requests: IngestRequestRecord[] = [];
  private readonly server: Server;
  private readonly ledger: AttestationLedger;
  private readonly faults: FaultInjector;
  private readonly hanging = new Set<ServerResponse>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private closed = false;

  constructor(private readonly options: IngestServerOptions) {
    const domain: TypedDataDomain = {
      name: 'EnergyOracle',
      version: '1',
      chainId: options.chainId,
      verifyingContract: getAddress(options.verifyingContract),
    };
    const now = options.now ?? (() => Date.now() / 1000);

    this.ledger = new AttestationLedger(domain, options.signers, now);
    this.accepted = this.ledger.accepted;
    this.faults = new FaultInjector(options.faults ?? {});
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        console.error('ingest server: request handler failed, destroying the socket', err);
        req.socket.destroy();
      });
    });
  }

  listen(port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, '127.0.0.1', () => {
        this.server.off('error', reject);
        resolve((this.server.address() as AddressInfo).port);
      });
    });
  }

  lastNonce(user: string): bigint {
    return this.ledger.lastNonce(user);
  }

  setFaults(faults: FaultOptions): void {
    this.faults.set(faults);
  }

  setSigners(addresses: string[]): void {
    this.ledger.setSigners(addresses);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const timer of this.timers) {
      clearTimeout(timer);
    }
    this.timers.clear();
    for (const res of this.hanging) {
      res.socket?.destroy();
    }
    this.hanging.clear();

    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const at = Date.now();
    const idempotencyKey = headerValue(req, 'idempotency-key');

    let decision: Decision | undefined;
    try {
      decision = await this.decide(req, idempotencyKey);
    } catch (err) {
      console.error('ingest server: handling the request failed, responding with 500', err);
      const reply = errorReply(500, `ingest server failed: ${(err as Error).message}`);
      decision = { outcome: { kind: 'reply', reply }, details: {} };
    }
    if (decision === undefined) {
      // The client closed the connection before sending the whole body.
      return;
    }

    const { outcome, details } = decision;
    const status = outcome.kind === 'reply' ? outcome.reply.status : outcome.kind;
    this.requests.push({ at, status, idempotencyKey, ...details });
    await this.deliver(req, res, outcome);
  }

  private async decide(
    req: IncomingMessage,
    idempotencyKey: string | undefined,
  ): Promise<Decision | undefined> {
    const early = checkRoute(req) ?? checkToken(req, this.options.token);
    if (early !== undefined) {
      return { outcome: { kind: 'reply', reply: early }, details: {} };
    }

    const body = await readBody(req, MAX_BODY_BYTES);
    if (body === 'aborted') {
      return undefined;
    }
    if (body === 'too-large') {
      const reply = errorReply(413, `body is larger than ${MAX_BODY_BYTES} bytes`);
      return { outcome: { kind: 'reply', reply }, details: {} };
    }

    const json = parseJson(body);
    const details = describeBody(json);
    return { outcome: this.process(json, idempotencyKey), details };
  }

  private process(json: unknown, idempotencyKey: string | undefined): Outcome {
    const fault = this.faults.draw();
    const faultOutcome = this.faults.beforeProcessing(fault);
    if (faultOutcome !== undefined) {
      return faultOutcome;
    }

    if (json === INVALID_JSON) {
      return { kind: 'reply', reply: errorReply(400, 'body is not valid JSON') };
    }

    const { reply, accepted } = this.ledger.submit(json, idempotencyKey);
    if (accepted && fault === 'acceptThenFail') {
      return this.faults.afterAcceptance();
    }
    return { kind: 'reply', reply };
  }

  private async deliver(
    req: IncomingMessage,
    res: ServerResponse,
    outcome: Outcome,
  ): Promise<void> {
    if (outcome.kind === 'hang') {
      this.hanging.add(res);
      res.on('close', () => this.hanging.delete(res));
      return;
    }

    await this.sleep(this.faults.latencyMs);
    if (this.closed) {
      return;
    }

    if (outcome.kind === 'reset') {
      req.socket.resetAndDestroy();
      return;
    }

    const { status, body, headers } = outcome.reply;
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify(body));
  }

  private sleep(ms: number): Promise<void> {
    if (ms <= 0) {
      return Promise.resolve();
    }
    // close() clears pending timers, so a delayed response is dropped instead of being
    // written to a destroyed socket.
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        resolve();
      }, ms);
      this.timers.add(timer);
    });
  }
}

/** Starts the ingestion server on 127.0.0.1 and resolves once it listens. */
export async function startIngestServer(options: IngestServerOptions): Promise<IngestServer> {
  const ingest = new IngestHttpServer(options);
  const port = await ingest.listen(options.port ?? 0);

  return {
    url: `http://127.0.0.1:${port}${ATTESTATION_PATH}`,
    accepted: ingest.accepted,
    requests: ingest.requests,
    lastNonce: (user) => ingest.lastNonce(user),
    setFaults: (faults) => ingest.setFaults(faults),
    setSigners: (addresses) => ingest.setSigners(addresses),
    close: () => ingest.close(),
  };
}
