import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { Fraction } from '../../apps/operator/decimal';
import {
  add,
  divideByInteger,
  formatDecimal,
  fromInteger,
  isNegative,
  multiply,
  parseDecimal,
  roundHalfUp,
} from '../../apps/operator/decimal';
import { roundHalfUp as expectedRound, scaled, shift } from '../support/exact-decimal';

/** Compares two fractions by value, whatever their representation. */
function assertValue(actual: Fraction | undefined, numerator: bigint, denominator: bigint): void {
  assert.ok(actual !== undefined, 'expected a fraction, got undefined');
  assert.equal(actual.numerator * denominator, numerator * actual.denominator);
}

describe('parseDecimal', () => {
  const accepted: Array<[string, bigint, bigint]> = [
    ['12', 12n, 1n],
    ['0', 0n, 1n],
    ['-0.5', -1n, 2n],
    ['+3', 3n, 1n],
    ['32.372', 32372n, 1000n],
    ['1.5e3', 1500n, 1n],
    ['1.5E+3', 1500n, 1n],
    ['25e-2', 1n, 4n],
    ['.5', 1n, 2n],
    ['1.', 1n, 1n],
    [' 7 ', 7n, 1n],
    ['000123.4500', 12345n, 100n],
    ['1e400', 10n ** 400n, 1n],
    ['1e-400', 1n, 10n ** 400n],
    ['36.358999999999995', 36358999999999995n, 10n ** 15n],
  ];
  for (const [text, numerator, denominator] of accepted) {
    test(`parseDecimal accepts ${JSON.stringify(text)}`, () => {
      assertValue(parseDecimal(text), numerator, denominator);
    });
  }

  const rejected = [
    '',
    ' ',
    'abc',
    'NaN',
    'Infinity',
    '-Infinity',
    '0x10',
    '1,5',
    '1.2.3',
    '--1',
    '1e',
    'e5',
    '.',
    '1 2',
    '1e401',
    '1e-401',
    '1e99999999999999999999',
  ];
  for (const text of rejected) {
    test(`parseDecimal rejects ${JSON.stringify(text)}`, () => {
      assert.equal(parseDecimal(text), undefined);
    });
  }

  test('parseDecimal keeps denominator positive', () => {
    const parsed = parseDecimal('-12.5e-3');
    assert.ok(parsed !== undefined);
    assert.ok(parsed.denominator > 0n);
    assert.ok(isNegative(parsed));
  });
});

describe('roundHalfUp', () => {
  const cases: Array<[string, bigint]> = [
    ['2.5', 3n],
    ['2.4999999999999999999', 2n],
    ['2.5000000000000000001', 3n],
    ['0.5', 1n],
    ['0.49', 0n],
    ['-0.5', 0n],
    ['-2.5', -2n],
    ['-2.51', -3n],
    ['-2.49', -2n],
    ['3', 3n],
    ['0', 0n],
    ['75399785.51926394', 75399786n],
  ];
  for (const [text, expected] of cases) {
    test(`roundHalfUp of ${text} is ${expected}`, () => {
      const parsed = parseDecimal(text);
      assert.ok(parsed !== undefined);
      assert.equal(roundHalfUp(parsed), expected);
    });
  }

  test('roundHalfUp of thirds', () => {
    assert.equal(roundHalfUp({ numerator: 1n, denominator: 3n }), 0n);
    assert.equal(roundHalfUp({ numerator: 2n, denominator: 3n }), 1n);
    assert.equal(roundHalfUp({ numerator: -2n, denominator: 3n }), -1n);
  });
});

describe('fraction arithmetic', () => {
  test('add with equal denominators', () => {
    assertValue(
      add({ numerator: 1n, denominator: 10n }, { numerator: 2n, denominator: 10n }),
      3n,
      10n,
    );
  });

  test('add with different denominators', () => {
    assertValue(
      add({ numerator: 1n, denominator: 3n }, { numerator: 1n, denominator: 6n }),
      1n,
      2n,
    );
  });

  test('multiply by scaling factor', () => {
    assertValue(
      multiply({ numerator: 7n, denominator: 1000n }, fromInteger(1_000_000n)),
      7000n,
      1n,
    );
  });

  test('divideByInteger computes mean', () => {
    assertValue(divideByInteger({ numerator: 9n, denominator: 10n }, 3n), 3n, 10n);
  });

  test('divideByInteger rejects zero divisor', () => {
    assert.throws(() => divideByInteger(fromInteger(1n), 0n), RangeError);
  });

  test('isNegative treats minus zero as zero', () => {
    const parsed = parseDecimal('-0.0');
    assert.ok(parsed !== undefined);
    assert.equal(isNegative(parsed), false);
  });
});

describe('formatDecimal', () => {
  const cases: Array<[Fraction, number, string]> = [
    [{ numerator: 1n, denominator: 3n }, 6, '0.333333'],
    [{ numerator: 2n, denominator: 3n }, 2, '0.67'],
    [{ numerator: -5n, denominator: 2n }, 6, '-2.5'],
    [{ numerator: 12n, denominator: 1n }, 6, '12'],
    [{ numerator: 0n, denominator: 1n }, 6, '0'],
    [{ numerator: 1n, denominator: 10_000_000n }, 6, '0'],
  ];
  for (const [fraction, digits, expected] of cases) {
    test(`formatDecimal gives ${expected}`, () => {
      assert.equal(formatDecimal(fraction, digits), expected);
    });
  }
});

/** Decimal text with an optional sign, fraction and exponent, and its parts. */
const decimalText = fc
  .record({
    sign: fc.constantFrom('', '+', '-'),
    whole: fc.stringMatching(/^\d{1,30}$/),
    fraction: fc.option(fc.stringMatching(/^\d{0,30}$/), { nil: undefined }),
    exponent: fc.option(fc.integer({ min: -60, max: 60 }), { nil: undefined }),
  })
  .map((parts) => {
    const fraction = parts.fraction === undefined ? '' : `.${parts.fraction}`;
    const exponent = parts.exponent === undefined ? '' : `e${parts.exponent}`;
    return `${parts.sign}${parts.whole}${fraction}${exponent}`;
  });

describe('decimal properties', () => {
  test('parseDecimal matches BigInt computation', () => {
    fc.assert(
      fc.property(decimalText, (text) => {
        const expected = scaled(text);
        assertValue(parseDecimal(text), expected.units, 10n ** BigInt(expected.scale));
      }),
      { numRuns: 2000 },
    );
  });

  test('roundHalfUp matches BigInt computation', () => {
    fc.assert(
      fc.property(decimalText, (text) => {
        const parsed = parseDecimal(text);
        assert.ok(parsed !== undefined);
        assert.equal(roundHalfUp(parsed), expectedRound(scaled(text)));
      }),
      { numRuns: 2000 },
    );
  });

  test('scaled rounding matches BigInt computation', () => {
    fc.assert(
      fc.property(decimalText, fc.integer({ min: 0, max: 18 }), (text, digits) => {
        const parsed = parseDecimal(text);
        assert.ok(parsed !== undefined);
        const factor = fromInteger(10n ** BigInt(digits));
        assert.equal(
          roundHalfUp(multiply(parsed, factor)),
          expectedRound(shift(scaled(text), digits)),
        );
      }),
      { numRuns: 2000 },
    );
  });

  test('roundHalfUp agrees with Math.round', () => {
    // Within these bounds n / d as a double is never far enough off to cross a half.
    const numerator = fc.integer({ min: -1_000_000, max: 1_000_000 });
    const denominator = fc.integer({ min: 1, max: 1000 });
    fc.assert(
      fc.property(numerator, denominator, (n, d) => {
        const fraction = { numerator: BigInt(n), denominator: BigInt(d) };
        assert.equal(roundHalfUp(fraction), BigInt(Math.round(n / d)));
      }),
      { numRuns: 2000 },
    );
  });
});
