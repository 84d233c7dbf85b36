// A small reader of tar archives (POSIX ustar, GNU long names, pax path records), enough to check a build context
// the way BuildKit would see it: is it a tar at all, and which files are at its root. Compressed archives are not
// unpacked (build.sh reads a plain tar from stdin).
//
// This file must stay dependency-free (node: modules only): the sandbox runs it with plain Node 24.

export class TarError extends Error {}

export interface TarEntry {
  /** The path as stored, e.g. `./Dockerfile`, `src/server.mts`. */
  name: string;
  /** The type flag: '0' regular file ('\0' is reported as '0'), '5' directory, '2' symlink ... */
  type: string;
  size: number;
  data: Buffer;
}

const BLOCK = 512;

function cString(b: Buffer): string {
  const nul = b.indexOf(0);
  return b.subarray(0, nul === -1 ? b.length : nul).toString('utf8');
}

function numeric(b: Buffer): number | undefined {
  // GNU base-256 for big values: the high bit of the first byte set.
  if (((b[0] ?? 0) & 0x80) !== 0) {
    let n = (b[0] ?? 0) & 0x7f;
    for (let i = 1; i < b.length; i++) n = n * 256 + (b[i] ?? 0);
    return n;
  }
  const text = cString(b).trim();
  if (text === '') return 0;
  return /^[0-7]+$/.test(text) ? parseInt(text, 8) : undefined;
}

function paxPath(data: Buffer): string | undefined {
  // Records: "<len> <key>=<value>\n", len counting the whole record.
  let off = 0;
  let found: string | undefined;
  while (off < data.length) {
    const space = data.indexOf(0x20, off);
    if (space === -1) break;
    const len = Number(data.subarray(off, space).toString('latin1'));
    if (!Number.isInteger(len) || len <= 0) throw new TarError('corrupt pax header');
    const record = data.subarray(space + 1, off + len - 1).toString('utf8');
    const eq = record.indexOf('=');
    if (eq !== -1 && record.slice(0, eq) === 'path') found = record.slice(eq + 1);
    off += len;
  }
  return found;
}

/** Every entry of a tar archive; throws TarError when `buf` is not a (complete) tar archive. */
export function readTar(buf: Buffer): TarEntry[] {
  if (buf.length === 0) throw new TarError('empty input');
  if (buf[0] === 0x1f && buf[1] === 0x8b) throw new TarError('gzip-compressed data, not a plain tar');
  if (buf.length < BLOCK)
    throw new TarError(`no tar header at the start (${buf.length} bytes, shorter than one ${BLOCK}-byte header)`);
  const out: TarEntry[] = [];
  let off = 0;
  let longName: string | undefined;
  let pax: string | undefined;
  while (off + BLOCK <= buf.length) {
    const h = buf.subarray(off, off + BLOCK);
    if (h.every((b) => b === 0)) return out; // end-of-archive marker
    const stored = numeric(h.subarray(148, 156));
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : (h[i] as number);
    if (stored !== sum)
      throw new TarError(
        off === 0 ? 'no tar header at the start (bad header checksum)' : `bad header checksum at offset ${off}`,
      );
    const size = numeric(h.subarray(124, 136));
    if (size === undefined) throw new TarError(`bad size field at offset ${off}`);
    const typeByte = h[156] as number;
    const type = typeByte === 0 ? '0' : String.fromCharCode(typeByte);
    let name = cString(h.subarray(0, 100));
    // POSIX ustar ("ustar\0") has a name prefix; GNU's "ustar  \0" uses those bytes for other fields.
    if (h.subarray(257, 263).toString('latin1') === 'ustar\0') {
      const prefix = cString(h.subarray(345, 500));
      if (prefix !== '') name = `${prefix}/${name}`;
    }
    const start = off + BLOCK;
    if (start + size > buf.length) throw new TarError(`unexpected end of archive (entry "${name}" is truncated)`);
    const data = buf.subarray(start, start + size);
    off = start + Math.ceil(size / BLOCK) * BLOCK;
    if (type === 'L') {
      longName = cString(data);
      continue;
    }
    if (type === 'x') {
      pax = paxPath(data);
      continue;
    }
    if (type === 'g') continue;
    out.push({ name: pax ?? longName ?? name, type, size, data });
    pax = undefined;
    longName = undefined;
  }
  if (off !== buf.length) throw new TarError('unexpected end of archive (trailing partial block)');
  // No end-of-archive marker: GNU tar and busybox accept that.
  return out;
}

/** `./a/./b/` -> `a/b`: how an archive path names a file relative to the extraction root. */
export function normalizeTarPath(name: string): string {
  return name
    .split('/')
    .filter((p) => p !== '' && p !== '.')
    .join('/');
}

/** Writes a tar archive (ustar, regular files only): for tests that need a build context. */
export function makeTar(files: ReadonlyArray<{ name: string; content: string | Buffer; mode?: number }>): Buffer {
  const blocks: Buffer[] = [];
  for (const f of files) {
    const data = Buffer.isBuffer(f.content) ? f.content : Buffer.from(f.content);
    if (Buffer.byteLength(f.name) > 100) throw new Error(`makeTar: name longer than 100 bytes: ${f.name}`);
    const h = Buffer.alloc(BLOCK);
    h.write(f.name, 0, 'utf8');
    h.write((f.mode ?? 0o644).toString(8).padStart(7, '0') + '\0', 100, 'latin1');
    h.write('0000000\0', 108, 'latin1');
    h.write('0000000\0', 116, 'latin1');
    h.write(data.length.toString(8).padStart(11, '0') + '\0', 124, 'latin1');
    h.write(
      Math.floor(Date.now() / 1000)
        .toString(8)
        .padStart(11, '0') + '\0',
      136,
      'latin1',
    );
    h.write('        ', 148, 'latin1');
    h.write('0', 156, 'latin1');
    h.write('ustar\0', 257, 'latin1');
    h.write('00', 263, 'latin1');
    let sum = 0;
    for (const b of h) sum += b;
    h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
    blocks.push(h, data, Buffer.alloc((BLOCK - (data.length % BLOCK)) % BLOCK));
  }
  blocks.push(Buffer.alloc(BLOCK * 2));
  return Buffer.concat(blocks);
}
