/**
 * A kernel's System.map (`nm -n vmlinux`: "ffffffff81000000 T _text"), for
 * naming the addresses a kernel without KALLSYMS prints where it would print
 * a symbol (initcall_debug's "calling  0xffffffff808e8514 @ 1").
 */
export class SystemMap {
  private constructor(
    private readonly addresses: readonly bigint[],
    private readonly names: readonly string[],
  ) {}

  static parse(text: string): SystemMap {
    const entries: [bigint, string][] = [];
    for (const line of text.split('\n')) {
      const m = /^([0-9a-f]{8,16}) ([a-zA-Z]) (\S+)$/.exec(line);
      // Code symbols only (t/T, and w/W for weak ones): an initcall is a function.
      if (m && /[tTwW]/.test(m[2]!)) entries.push([BigInt(`0x${m[1]}`), m[3]!]);
    }
    entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return new SystemMap(
      entries.map(([a]) => a),
      entries.map(([, n]) => n),
    );
  }

  get size(): number {
    return this.addresses.length;
  }

  /** The function at an address: its name, with +0xOFFSET when the address is inside it; undefined below the first symbol. */
  name(address: bigint): string | undefined {
    let low = 0;
    let high = this.addresses.length - 1;
    let found = -1;
    while (low <= high) {
      const mid = (low + high) >> 1;
      if (this.addresses[mid]! <= address) {
        found = mid;
        low = mid + 1;
      } else high = mid - 1;
    }
    if (found < 0) return undefined;
    const offset = address - this.addresses[found]!;
    return offset === 0n ? this.names[found] : `${this.names[found]}+0x${offset.toString(16)}`;
  }
}
