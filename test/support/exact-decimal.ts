/**
 * Exact decimal arithmetic written separately from apps/operator/decimal.ts, so that tests
 * compute expected attestation figures without the code under test. A value is a scaled
 * integer: `units / 10^scale`.
 */
export interface Scaled {
  units: bigint;
  scale: number;
}

const DECIMAL_TEXT = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/;

/** Reads decimal text such as `32.372`, `-0.5` or `1.5e3`; throws on anything else. */
export function scaled(text: string): Scaled {
  const match = DECIMAL_TEXT.exec(text.trim());
  const whole = match?.[2] ?? '';
  const fraction = match?.[3] ?? '';
  if (match === null || whole + fraction === '') throw new Error(`not decimal text: ${text}`);

  const exponent = Number(match[4] ?? '0');
  let units = BigInt(whole + fraction);
  let scale = fraction.length - exponent;
  if (scale < 0) {
    units *= 10n ** BigInt(-scale);
    scale = 0;
  }
  return { units: match[1] === '-' ? -units : units, scale };
}

export function sum(values: Scaled[]): Scaled {
  const scale = Math.max(0, ...values.map((value) => value.scale));
  let units = 0n;
  for (const value of values) units += value.units * 10n ** BigInt(scale - value.scale);
  return { units, scale };
}

/** Multiplies by 10^digits, the way a scaling factor of 1, 10, ..., 1000000 does. */
export function shift(value: Scaled, digits: number): Scaled {
  if (digits <= value.scale) return { units: value.units, scale: value.scale - digits };
  return { units: value.units * 10n ** BigInt(digits - value.scale), scale: 0 };
}

/** Rounds `units / (divisor × 10^scale)` to the nearest integer, halves up (like Math.round). */
export function roundHalfUp(value: Scaled, divisor = 1n): bigint {
  const denominator = divisor * 10n ** BigInt(value.scale);
  const magnitude = value.units < 0n ? -value.units : value.units;
  const quotient = magnitude / denominator;
  const twiceRemainder = 2n * (magnitude % denominator);

  if (value.units >= 0n) return twiceRemainder >= denominator ? quotient + 1n : quotient;
  // For a negative value a half goes towards zero: Math.round(-2.5) is -2.
  return twiceRemainder > denominator ? -(quotient + 1n) : -quotient;
}
