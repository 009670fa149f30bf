// Types for debian-control@1 (CommonJS, ships none), limited to what
// control.ts uses. An ambient declaration in a script file (no top-level
// import or export) so that the builder's `include: ["src"]` picks it up; it
// is not emitted, which is fine because no exported API mentions these types.
declare module 'debian-control' {
  import type { Transform, TransformOptions } from 'node:stream';

  namespace debianControl {
    /** A multi-line field is an array of its lines, trimmed; the first is '' when the value starts on the next line. */
    type FieldValue = string | string[];

    /** Parses ONE paragraph. Field names keep their case; the last of duplicate fields wins. */
    function parse(text: string): Record<string, FieldValue>;

    /** The parser's own line classification. */
    function isFieldLine(line: string): boolean;
    function isContinueLine(line: string): boolean;

    /**
     * Splits a control file into paragraphs, each pushed as one string. It
     * calls toString() on each written chunk, so a Buffer chunk that ends in
     * the middle of a UTF-8 character corrupts it: write strings.
     */
    class ParagraphStream extends Transform {
      constructor(options?: TransformOptions);
    }
  }

  export = debianControl;
}
