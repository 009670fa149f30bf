// What the benchmark reports of something thrown: anything can be, so each
// property is looked for, not assumed.

/** The message of something thrown: an Error's own, else the value as text. */
export function errorMessage(error: unknown): string {
  const message = typeof error === 'object' && error !== null && 'message' in error ? error.message : undefined;
  return String(message ?? error);
}

/** The code of a TinyxError (E_RECIPE) or of a Node system error (ENOENT), when it has one. */
export function errorCode(error: unknown): string | undefined {
  const code = typeof error === 'object' && error !== null && 'code' in error ? error.code : undefined;
  return code === undefined || code === null ? undefined : String(code);
}
