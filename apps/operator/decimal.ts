/**
 * Exact decimal arithmetic for the attestation figures. Log values such as `32.372` are
 * kept as the fraction numerator/denominator of their decimal text, so sums, means,
 * scaling and rounding never pass through a binary float and never lose digits.
 */
export interface Fraction {
  numerator: bigint;
  /** Always positive. */
  denominator: bigint;
}

const DECIMAL = /^([+-]?)(\d+)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$|^([+-]?)\.(\d+)(?:[eE]([+-]?\d+))?$/;

/** Larger exponents are refused: `1e999999` would otherwise allocate a million-digit number. */
const MAX_EXPONENT = 400;

/** Parses decimal text (`12`, `-0.5`, `1.5e3`). Returns undefined for anything else. */
export function parseDecimal(text: string): Fraction | undefined {
  const match = DECIMAL.exec(text.trim());
  if (match === null) return undefined;

  const sign = match[1] ?? match[5] ?? '';
  const whole = match[2] ?? '0';
  const fraction = match[3] ?? match[6] ?? '';
  const exponent = Number(match[4] ?? match[7] ?? '0');
  if (!Number.isSafeInteger(exponent) || Math.abs(exponent) > MAX_EXPONENT) return undefined;

  let numerator = BigInt(whole + fraction);
  let denominator = 10n ** BigInt(fraction.length);
  if (exponent > 0) numerator *= 10n ** BigInt(exponent);
  if (exponent < 0) denominator *= 10n ** BigInt(-exponent);
  if (sign === '-') numerator = -numerator;
  return { numerator, denominator };
}

export function fromInteger(value: bigint): Fraction {
  return { numerator: value, denominator: 1n };
}

export function add(a: Fraction, b: Fraction): Fraction {
  if (a.denominator === b.denominator) {
    return { numerator: a.numerator + b.numerator, denominator: a.denominator };
  }
  return {
    numerator: a.numerator * b.denominator + b.numerator * a.denominator,
    denominator: a.denominator * b.denominator,
  };
}

export function multiply(a: Fraction, b: Fraction): Fraction {
  return { numerator: a.numerator * b.numerator, denominator: a.denominator * b.denominator };
}

export function divideByInteger(a: Fraction, divisor: bigint): Fraction {
  if (divisor <= 0n) throw new RangeError('divisor must be positive');
  return { numerator: a.numerator, denominator: a.denominator * divisor };
}

export function isNegative(a: Fraction): boolean {
  return a.numerator < 0n;
}

/**
 * Rounds to the nearest integer, halves towards positive infinity: the rule of JavaScript's
 * `Math.round`, which the reference daemon used, so both agree on every exact input.
 */
export function roundHalfUp(a: Fraction): bigint {
  return floorDivide(2n * a.numerator + a.denominator, 2n * a.denominator);
}

function floorDivide(numerator: bigint, denominator: bigint): bigint {
  const quotient = numerator / denominator;
  const hasRemainder = quotient * denominator !== numerator;
  return hasRemainder && numerator < 0n ? quotient - 1n : quotient;
}

/** Formats as decimal text with up to `digits` fraction digits (for log lines only). */
export function formatDecimal(a: Fraction, digits = 6): string {
  const scale = 10n ** BigInt(digits);
  const scaled = roundHalfUp(multiply(a, fromInteger(scale)));
  const negative = scaled < 0n;
  const text = (negative ? -scaled : scaled).toString().padStart(digits + 1, '0');
  const whole = text.slice(0, text.length - digits);
  const fraction = text.slice(text.length - digits).replace(/0+$/, '');
  return `${negative ? '-' : ''}${whole}${fraction ? `.${fraction}` : ''}`;
}
