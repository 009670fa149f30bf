/**
 * The builder's errors: the family of @tinyx/image (one error class for all
 * of tinyx), and RecipeError, which names the recipe file and field.
 */
import { TinyxError } from '@tinyx/image';

export { TinyxError, MissingToolError, CommandFailedError, InterruptedError, throwIfAborted, abortReason } from '@tinyx/image';
export type { ErrorCode, ErrorKind } from '@tinyx/image';

/** A recipe, blacklist or option that does not validate. Names the file and the field. */
export class RecipeError extends TinyxError {
  override name = 'RecipeError';
  readonly file: string;
  readonly field: string | undefined;

  constructor(file: string, field: string | undefined, problem: string, hint?: string) {
    super('E_RECIPE', field ? `${file}: ${field}: ${problem}` : `${file}: ${problem}`, { hint, kind: 'user' });
    this.file = file;
    this.field = field;
  }
}
