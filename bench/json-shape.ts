// Narrowing for the JSON the benchmark reads back (its cache entries' meta.json,
// the Xen harness's result lines, bench/results.json): JSON.parse gives
// unknown, and these say what it is.

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function isNumberList(value: unknown): value is number[] {
  return Array.isArray(value) && value.every((x) => typeof x === 'number');
}

export function isStringList(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((x) => typeof x === 'string');
}

/** A number, or undefined for anything else (a field a failed run did not get to write). */
export function optionalNumber(value: unknown): number | undefined {
  return typeof value === 'number' ? value : undefined;
}
