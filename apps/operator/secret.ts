import { inspect } from 'node:util';

const REDACTED = '[redacted]';

/**
 * A value that must never be printed: the signer key, the API token, a keystore password.
 * Every way Node or pino turns an object into text (`String`, `JSON.stringify`,
 * `util.inspect`) gets only `[redacted]`; `reveal()` is the one way to read it.
 */
export class Secret {
  readonly #value: string;

  constructor(value: string) {
    this.#value = value;
  }

  reveal(): string {
    return this.#value;
  }

  toString(): string {
    return REDACTED;
  }

  toJSON(): string {
    return REDACTED;
  }

  [inspect.custom](): string {
    return REDACTED;
  }
}
