/**
 * The toolstack's error: the same shape as the builder's TinyxError (code,
 * kind, hint), without depending on the builder. The CLI prints message and
 * hint and picks the exit code from `kind`.
 */
export class ToolstackError extends Error {
  override name = 'ToolstackError';
  readonly code: string;
  readonly hint: string | undefined;
  readonly kind: 'user' | 'host' | 'failure' | 'interrupted';

  constructor(code: string, message: string, options: { hint?: string; kind?: ToolstackError['kind']; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.code = code;
    this.hint = options.hint;
    this.kind = options.kind ?? 'failure';
  }
}
