// Argument parsers shared by the commands: each throws commander's InvalidArgumentError, which
// commander reports as `error: option '<flag>' argument '<v>' is invalid. <message>` and exit 1.
import { InvalidArgumentError } from 'commander';

/** An integer ≥ min (and ≤ max, when given); `name` is the flag as the user typed it. */
export function intArg(name: string, min: number, max?: number) {
  return (v: string): number => {
    const n = Number(v);
    if (max !== undefined && !(Number.isInteger(n) && n >= min && n <= max)) {
      throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}, got "${v}"`);
    }
    if (!Number.isInteger(n) || n < min) {
      throw new InvalidArgumentError(min === 1 ? `${name} must be a positive integer, got "${v}"` : `${name} must be an integer >= ${min}, got "${v}"`);
    }
    return n;
  };
}

/** A number in (0, 1]. */
export function fractionArg(v: string): number {
  const n = Number(v);
  if (!(n > 0 && n <= 1)) throw new InvalidArgumentError(`expected a fraction in (0, 1], got ${JSON.stringify(v)}`);
  return n;
}

/** A JSON object given inline. */
export function jsonObjectArg(v: string): Record<string, unknown> {
  let x: unknown;
  try {
    x = JSON.parse(v);
  } catch {
    throw new InvalidArgumentError(`expected a JSON object, got ${JSON.stringify(v)}`);
  }
  if (typeof x !== 'object' || x === null || Array.isArray(x)) throw new InvalidArgumentError(`expected a JSON object, got ${JSON.stringify(v)}`);
  return x as Record<string, unknown>;
}
