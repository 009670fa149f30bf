import { createReadStream, createWriteStream } from 'node:fs';
import { rename, rm, stat } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { run } from '@tinyx/image';

/** How an initramfs is compressed; the kernel needs the matching decompressor (CONFIG_RD_*). */
export interface CompressionSpec {
  /** Added to the archive's file name: initrd.cpio.gz, initrd.cpio.xz. */
  suffix: string;
  /** The Kconfig symbol of the kernel's decompressor for it, or null for none needed. */
  kernelSymbol: string | null;
  describe: string;
  /** Compresses `input` into `output` (which must not exist yet). Deterministic: one thread, fixed settings. */
  compress(input: string, output: string, signal?: AbortSignal): Promise<void>;
}

/**
 * The compressions, by the name `--compression` takes. gzip is the default:
 * every kernel decompresses it, and it is quick to do so under TCG. xz is the
 * smallest and the slowest to unpack; zstd sits in between and unpacks fastest.
 */
export const COMPRESSIONS = {
  gzip: {
    suffix: '.gz',
    kernelSymbol: 'RD_GZIP',
    describe: 'gzip -9 (the default; every kernel has the decompressor)',
    compress: async (input, output) => {
      // Node's gzip header has no timestamp and no file name: the bytes depend on the input only.
      await pipeline(createReadStream(input), createGzip({ level: 9 }), createWriteStream(output, { flags: 'wx' }));
    },
  },
  xz: {
    suffix: '.xz',
    kernelSymbol: 'RD_XZ',
    describe: 'xz -9e with a dictionary no larger than the archive, CRC32 as the kernel requires (smallest; slowest to compress and unpack)',
    compress: async (input, output, signal) => {
      // The kernel's decompressor allocates the whole dictionary the header states: -9e's 64 MiB does not fit a small guest.
      const dict = xzDictionary((await stat(input)).size);
      await run('xz', ['--keep', '--check=crc32', `--lzma2=preset=9e,dict=${dict}`, '--threads=1', '--suffix=.xz-out', input], { signal });
      await rename(`${input}.xz-out`, output);
    },
  },
  zstd: {
    suffix: '.zst',
    kernelSymbol: 'RD_ZSTD',
    describe: 'zstd -19 (close to xz in size, the fastest to unpack)',
    compress: async (input, output, signal) => {
      await run('zstd', ['-q', '-19', '--threads=1', '--no-progress', input, '-o', output], { signal });
    },
  },
  none: {
    suffix: '',
    kernelSymbol: null,
    describe: 'no compression (largest; nothing to unpack)',
    compress: async (input, output) => {
      await rename(input, output);
    },
  },
} as const satisfies Record<string, CompressionSpec>;

export type Compression = keyof typeof COMPRESSIONS;

/** -9e's dictionary: what xz uses for inputs at least this large. */
const XZ_MAX_DICT = 64 * 2 ** 20;

/**
 * The dictionary for an xz stream of `bytes`: the smallest size xz's header
 * can state (2^n or 2^n + 2^(n-1) bytes, from 4 KiB) that holds the whole
 * input, at most -9e's 64 MiB. A larger one finds no more matches, but the
 * kernel's initramfs decompressor allocates all of it (XZ_DYNALLOC): an
 * image packed with -9e's 64 MiB panicked in a 48 MiB Xen guest ("XZ
 * decompressor ran out of memory").
 */
export function xzDictionary(bytes: number): number {
  for (let n = 12; ; n++) {
    for (const size of [2 ** n, 2 ** n + 2 ** (n - 1)]) if (size >= bytes || size >= XZ_MAX_DICT) return Math.min(size, XZ_MAX_DICT);
  }
}

/** Compresses, removing the partial output on failure. */
export async function compressFile(compression: Compression, input: string, output: string, signal?: AbortSignal): Promise<void> {
  try {
    await (COMPRESSIONS[compression] as CompressionSpec).compress(input, output, signal);
  } catch (error) {
    await rm(output, { force: true });
    await rm(`${input}.xz-out`, { force: true });
    throw error;
  }
}
