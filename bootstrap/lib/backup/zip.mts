// Reads one file out of a zip archive: the form in which GitHub serves a workflow artifact (actions/upload-artifact
// zips what it uploads). Only what such archives hold is read: stored (0) or deflated (8) entries, zip64 fields per
// entry, no encryption; an archive over 4 GiB (a zip64 end record) and anything else is refused by name. The
// entry's integrity is not checked here: it is an age file, which authenticates every byte (crypt.mts). Sizes are,
// so a cut download is named as such.
import { createReadStream, createWriteStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { PassThrough, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createInflateRaw } from 'node:zlib';

export interface ZipEntry {
  name: string;
  /** 0 stored, 8 deflate. */
  method: number;
  flags: number;
  compressedSize: number;
  size: number;
  localHeaderOffset: number;
}

const EOCD = 0x06054b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;
/** The end record (22 bytes) plus the longest comment it may carry. */
const EOCD_SEARCH = 22 + 0xffff;

export class ZipError extends Error {}

async function readAt(file: string, position: number, length: number): Promise<Buffer> {
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(length);
    const { bytesRead } = await fh.read(buf, 0, length, position);
    if (bytesRead !== length) throw new ZipError(`ends inside a header (at byte ${position + bytesRead})`);
    return buf;
  } finally {
    await fh.close();
  }
}

/** The entries the central directory lists. */
export async function zipEntries(file: string): Promise<ZipEntry[]> {
  const size = (await stat(file)).size;
  if (size < 22) throw new ZipError(`is ${size} bytes: not a zip archive`);
  const tailStart = Math.max(0, size - EOCD_SEARCH);
  const tail = await readAt(file, tailStart, size - tailStart);
  let at = -1;
  for (let i = tail.length - 22; i >= 0; i--)
    if (tail.readUInt32LE(i) === EOCD) {
      at = i;
      break;
    }
  if (at < 0) throw new ZipError('has no zip end record: not a zip archive, or cut short');
  const count = tail.readUInt16LE(at + 10);
  const cdSize = tail.readUInt32LE(at + 12);
  const cdOffset = tail.readUInt32LE(at + 16);
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff)
    throw new ZipError('is a zip64 archive (over 4 GiB), which this reader does not take: unzip it by hand');
  if (cdOffset + cdSize > tailStart + at) throw new ZipError('has a central directory past its end: cut short');
  const cd = await readAt(file, cdOffset, cdSize);
  const entries: ZipEntry[] = [];
  let p = 0;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cd.length || cd.readUInt32LE(p) !== CENTRAL)
      throw new ZipError(`central directory entry ${i} is broken`);
    const nameLength = cd.readUInt16LE(p + 28);
    const extraLength = cd.readUInt16LE(p + 30);
    const commentLength = cd.readUInt16LE(p + 32);
    const e: ZipEntry = {
      flags: cd.readUInt16LE(p + 8),
      method: cd.readUInt16LE(p + 10),
      compressedSize: cd.readUInt32LE(p + 20),
      size: cd.readUInt32LE(p + 24),
      localHeaderOffset: cd.readUInt32LE(p + 42),
      name: cd.toString('utf8', p + 46, p + 46 + nameLength),
    };
    zip64Sizes(e, cd.subarray(p + 46 + nameLength, p + 46 + nameLength + extraLength));
    entries.push(e);
    p += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}

/**
 * An archiver that writes zip64 fields for every entry (whatever its size) marks the 32-bit fields 0xFFFFFFFF and
 * puts the real values in the extra field 0x0001, in this order: size, compressed size, local header offset.
 */
function zip64Sizes(e: ZipEntry, extra: Buffer): void {
  const MAX = 0xffffffff;
  if (e.size !== MAX && e.compressedSize !== MAX && e.localHeaderOffset !== MAX) return;
  for (let i = 0; i + 4 <= extra.length;) {
    const id = extra.readUInt16LE(i);
    const len = extra.readUInt16LE(i + 2);
    if (id === 0x0001) {
      let q = i + 4;
      const next = (): number => {
        if (q + 8 > i + 4 + len) throw new ZipError(`entry ${e.name} has a short zip64 extra field`);
        const v = Number(extra.readBigUInt64LE(q));
        q += 8;
        return v;
      };
      if (e.size === MAX) e.size = next();
      if (e.compressedSize === MAX) e.compressedSize = next();
      if (e.localHeaderOffset === MAX) e.localHeaderOffset = next();
      return;
    }
    i += 4 + len;
  }
  throw new ZipError(`entry ${e.name} is marked zip64 but has no zip64 extra field`);
}

/** Writes the entry's content to `dest` (0600); `onBytes` sees the compressed bytes read, for progress lines. */
export async function extractEntry(
  file: string,
  e: ZipEntry,
  dest: string,
  onBytes: (n: number) => void = () => undefined,
): Promise<void> {
  if (e.flags & 1) throw new ZipError(`entry ${e.name} is encrypted`);
  if (e.method !== 0 && e.method !== 8)
    throw new ZipError(`entry ${e.name} uses compression method ${e.method} (only stored and deflate are read)`);
  const local = await readAt(file, e.localHeaderOffset, 30);
  if (local.readUInt32LE(0) !== LOCAL) throw new ZipError(`entry ${e.name} has no local header where it should`);
  const start = e.localHeaderOffset + 30 + local.readUInt16LE(26) + local.readUInt16LE(28);
  if (start + e.compressedSize > (await stat(file)).size) throw new ZipError(`entry ${e.name} is cut short`);
  let written = 0;
  const counted = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      written += chunk.length;
      cb(null, chunk);
    },
  });
  // An empty entry has no bytes to read (a read stream's end is inclusive: start..start-1 would read one).
  const raw =
    e.compressedSize === 0
      ? new PassThrough().end()
      : createReadStream(file, { start, end: start + e.compressedSize - 1 });
  raw.on('data', (c: Buffer) => onBytes(c.length));
  await pipeline(
    raw,
    e.method === 8 ? createInflateRaw() : new PassThrough(),
    counted,
    createWriteStream(dest, { mode: 0o600 }),
  );
  if (written !== e.size) throw new ZipError(`entry ${e.name} gave ${written} bytes, its header says ${e.size}`);
}
