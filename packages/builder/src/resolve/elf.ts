/** What the first bytes of a file say about it as an executable. */
export type ExecutableKind =
  | { kind: 'elf'; class: 32 | 64; type: 'exec' | 'dyn' | 'rel' | 'core' | 'other'; machine: number }
  | { kind: 'script'; interpreter: string; args: string }
  | { kind: 'data' };

const ELF_MAGIC = [0x7f, 0x45, 0x4c, 0x46];

/** Classifies a file by its first bytes (64 are enough for the ELF header and a #! line). */
export function classifyExecutable(head: Uint8Array): ExecutableKind {
  if (head.length >= 20 && ELF_MAGIC.every((b, i) => head[i] === b)) {
    const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
    const little = head[5] === 1;
    const eType = view.getUint16(16, little);
    const type = eType === 2 ? 'exec' : eType === 3 ? 'dyn' : eType === 1 ? 'rel' : eType === 4 ? 'core' : 'other';
    return { kind: 'elf', class: head[4] === 2 ? 64 : 32, type, machine: view.getUint16(18, little) };
  }
  if (head[0] === 0x23 && head[1] === 0x21) {
    const text = Buffer.from(head).toString('latin1');
    const line = text.slice(2, text.includes('\n') ? text.indexOf('\n') : undefined).trim();
    const [interpreter = '', ...rest] = line.split(/\s+/);
    if (interpreter.startsWith('/')) return { kind: 'script', interpreter, args: rest.join(' ') };
  }
  return { kind: 'data' };
}

/**
 * The program interpreter (PT_INTERP) of an ELF file, e.g. /lib64/ld-linux-x86-64.so.2,
 * or undefined for a static program or a shared library. `read` returns bytes of the file.
 */
export async function readInterpreter(read: (offset: number, length: number) => Promise<Uint8Array>): Promise<string | undefined> {
  const header = await read(0, 64);
  if (classifyExecutable(header).kind !== 'elf') return undefined;
  const view = new DataView(header.buffer, header.byteOffset, header.byteLength);
  const is64 = header[4] === 2;
  const little = header[5] === 1;
  const phoff = is64 ? Number(view.getBigUint64(0x20, little)) : view.getUint32(0x1c, little);
  const phentsize = view.getUint16(is64 ? 0x36 : 0x2a, little);
  const phnum = view.getUint16(is64 ? 0x38 : 0x2c, little);
  if (phoff === 0 || phnum === 0) return undefined;
  const table = await read(phoff, phentsize * phnum);
  const tv = new DataView(table.buffer, table.byteOffset, table.byteLength);
  const PT_INTERP = 3;
  for (let at = 0; at + phentsize <= table.length; at += phentsize) {
    if (tv.getUint32(at, little) !== PT_INTERP) continue;
    const offset = is64 ? Number(tv.getBigUint64(at + 8, little)) : tv.getUint32(at + 4, little);
    const size = is64 ? Number(tv.getBigUint64(at + 0x20, little)) : tv.getUint32(at + 0x10, little);
    const bytes = await read(offset, size);
    const end = bytes.indexOf(0);
    return Buffer.from(bytes.subarray(0, end === -1 ? bytes.length : end)).toString('utf8');
  }
  return undefined;
}
