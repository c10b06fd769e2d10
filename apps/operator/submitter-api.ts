import { RejectedError, RetryableError, describeError } from './errors';
import type { RejectionReason } from './errors';
import type { Secret } from './secret';
import type { PendingRevision } from './state';
import type { Acceptance, DeliveryContext, Inspection, Submitter, TargetInfo } from './submitter';

/**
 * API mode: POST each signed attestation to the ingestion endpoint. The `Idempotency-Key`
 * is fixed per revision and nonce, so a server that accepted a first try and then failed
 * to respond replays its first response to the next try instead of accepting twice.
 */

export interface ApiSubmitterOptions {
  url: string;
  token: Secret | undefined;
  chainId: bigint;
  requestTimeoutMs: number;
}

/** Longest `Retry-After` honoured, so that a broken header cannot park a revision for days. */
const MAX_RETRY_AFTER_MS = 10 * 60 * 1000;

const REJECTIONS: Record<number, RejectionReason> = {
  400: 'bad-request',
  401: 'unauthorised-token',
  403: 'signer-not-authorised',
  409: 'nonce-used',
  422: 'deadline-passed',
};

export class ApiSubmitter implements Submitter {
  /** Idempotency keys that got one 409 already. */
  private readonly conflicts = new Set<string>();

  constructor(private readonly options: ApiSubmitterOptions) {}

  connect(): Promise<TargetInfo> {
    return Promise.resolve({ chainId: this.options.chainId, target: this.options.url });
  }

  currentTime(): Promise<bigint> {
    return Promise.resolve(BigInt(Math.floor(Date.now() / 1000)));
  }

  /** Reports every pending revision as not accepted: the API has no read endpoint, so sending again settles it. */
  inspect(): Promise<Inspection> {
    return Promise.resolve({
      state: 'not-accepted',
      reason:
        'the API cannot be asked; the same payload is sent again with the same Idempotency-Key',
    });
  }

  usersWithAcceptedAttestations(): Promise<number | undefined> {
    return Promise.resolve(undefined);
  }

  signerAuthorised(): Promise<boolean | undefined> {
    return Promise.resolve(undefined);
  }

  async deliver(revision: PendingRevision, context: DeliveryContext): Promise<Acceptance> {
    const response = await this.post(revision, context.signal);
    const text = this.redact(await readBody(response));

    if (response.status >= 200 && response.status < 300) {
      // A 2xx from something other than the API (a proxy's maintenance page) is not proof of
      // acceptance: an empty body or JSON is, anything else is tried again.
      const body = parseJson(text);
      if (body === undefined && text.trim() !== '') {
        throw new RetryableError(
          `the API responded ${response.status} with a body that is not JSON (${text.slice(0, 80).trim()}); a proxy may have responded in its place`,
        );
      }
      this.conflicts.delete(revision.idempotencyKey);
      const reference = String(body?.id ?? body?.reference ?? `http-${response.status}`);
      return { reference, details: { status: response.status } };
    }

    const summary = `${response.status} ${text.slice(0, 300)}`.trim();
    if (response.status >= 300 && response.status < 400) {
      const location = this.redact(response.headers.get('location') ?? '(no Location header)');
      throw new RejectedError(
        'unexpected-status',
        `the API redirected the request (${response.status} to ${location}); set ENERGY_ORACLE_API_URL to the final address`,
      );
    }
    if (response.status === 409 && !this.conflicts.has(revision.idempotencyKey)) {
      // A 409 can also mean that the server is still working on an earlier try of this key
      // (one that timed out here). Only a second 409, after a backoff, is read as a used nonce.
      this.conflicts.add(revision.idempotencyKey);
      throw new RetryableError(
        `the API responded ${summary}; trying the same request once more before taking a new nonce`,
      );
    }
    if (response.status === 408 || response.status >= 500) {
      throw new RetryableError(`the API responded ${summary}`);
    }
    if (response.status === 429) {
      const retryAfterMs = parseRetryAfter(response.headers.get('retry-after'));
      throw new RetryableError(
        `the API is throttling (429${retryAfterMs === undefined ? '' : `, Retry-After ${retryAfterMs} ms`})`,
        {
          retryAfterMs,
        },
      );
    }
    throw new RejectedError(
      REJECTIONS[response.status] ?? 'unexpected-status',
      `the API rejected the attestation: ${summary}`,
    );
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  /** Replaces the token in text from the network, which a server or an error may echo. */
  private redact(text: string): string {
    const token = this.options.token?.reveal();
    return token === undefined || token === '' ? text : text.split(token).join('[redacted]');
  }

  private async post(revision: PendingRevision, signal: AbortSignal): Promise<Response> {
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'idempotency-key': revision.idempotencyKey,
    };
    if (this.options.token !== undefined)
      headers.authorization = `Bearer ${this.options.token.reveal()}`;
    const body = JSON.stringify({
      attestation: revision.attestation,
      signature: revision.signature,
    });

    try {
      return await fetch(this.options.url, {
        method: 'POST',
        headers,
        body,
        // A redirected POST may become a GET without a body; a 3xx is reported instead.
        redirect: 'manual',
        signal: AbortSignal.any([signal, AbortSignal.timeout(this.options.requestTimeoutMs)]),
      });
    } catch (error) {
      if (signal.aborted) throw error;
      throw new RetryableError(`the API request failed: ${this.redact(networkCause(error))}`, {
        // Only the message: undici errors may carry the request, headers included.
        cause: new Error(this.redact(describeError(error))),
      });
    }
  }
}

async function readBody(response: Response): Promise<string> {
  try {
    return await response.text();
  } catch (error) {
    throw new RetryableError(`the API response was cut off: ${networkCause(error)}`);
  }
}

function parseJson(text: string): Record<string, unknown> | undefined {
  try {
    const parsed: unknown = JSON.parse(text);
    return typeof parsed === 'object' && parsed !== null
      ? (parsed as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/** Reads `Retry-After` as seconds or as an HTTP date. */
export function parseRetryAfter(header: string | null, nowMs = Date.now()): number | undefined {
  if (header === null || header.trim() === '') return undefined;
  // Seconds (RFC 9110 allows whole seconds; a fraction is accepted too) or an HTTP date.
  const trimmed = header.trim();
  const ms = /^\d+(\.\d+)?$/.test(trimmed) ? Number(trimmed) * 1000 : Date.parse(trimmed) - nowMs;
  if (!Number.isFinite(ms)) return undefined;
  return Math.min(Math.max(ms, 0), MAX_RETRY_AFTER_MS);
}

/** Names the network failure behind a fetch error (undici wraps it in `cause`). */
function networkCause(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  if (error.name === 'TimeoutError') return 'the request timed out';
  const cause = error.cause as { code?: string; message?: string } | undefined;
  return cause?.code ?? cause?.message ?? error.message;
}
