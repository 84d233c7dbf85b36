// The backup bundle before encryption: a few named parts in one stream, the manifest last.
//
//   "codex-k8s-backup 1\n"
//   then records, each a one-byte type:
//     P <u16 name length> <name>   a part begins
//     D <u32 length> <bytes>       a piece of the current part (at most CHUNK bytes)
//     E                            the current part ends
//     Z                            the bundle ends (right after the part manifest.json)
//
// The server writes it (it does not know the dump's size in advance, hence the pieces), the laptop reads it as it
// arrives. The manifest names every other part with its size and sha256: a reader that reaches Z has checked each.
// age (lib/backup/crypt.mts) authenticates the whole stream, so a flipped or missing byte is refused before this
// format is even looked at; these checks catch a bundle written wrong.
import { createHash } from 'node:crypto';
import type { Hash } from 'node:crypto';
import type { Writable } from 'node:stream';
import { OperationError } from '../errors.mts';

export const MAGIC = Buffer.from('codex-k8s-backup 1\n', 'utf8');
/** The largest piece written: large enough to be cheap, small enough to keep memory flat. */
export const CHUNK = 1 << 20;

/** The parts a bundle holds, in the order they are written. */
export const PART = {
  secrets: 'secrets.json',
  journal: 'journal.json',
  pins: 'pins.json',
  dump: 'postgres.dump',
  manifest: 'manifest.json',
} as const;
export type PartName = (typeof PART)[keyof typeof PART];
const DATA_PARTS: readonly string[] = [PART.secrets, PART.journal, PART.pins, PART.dump];

/** What the tool generated and the data depends on: restored as is, never generated anew. */
export interface BundleSecrets {
  postgres: { user: string; password: string; db: string };
  /** REMOTE.webhookSecretFile's value; absent when no step had generated it yet. */
  webhookSecret?: string;
}

export interface PartDigest {
  bytes: number;
  sha256: string;
}

export interface Manifest {
  format: 1;
  createdAt: string;
  /** The server's host name and the staging namespace the data came from. */
  server: { hostname: string; namespace: string; mode: string };
  /** The running service's image and the commit it was built from (the first image of a restore is that commit). */
  image?: { ref: string; commit?: string };
  postgres: {
    /** `SHOW server_version` of the database dumped. */
    serverVersion: string;
    /** Exact row counts per "schema.table", taken in the snapshot pg_dump read. */
    rows: Record<string, number>;
  };
  parts: Record<string, PartDigest>;
}

// ---- writing --------------------------------------------------------------------------------------------------------

function write(out: Writable, buf: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (e: Error) => reject(e);
    out.once('error', onError);
    const ok = out.write(buf, (e) => {
      out.off('error', onError);
      if (e) reject(e);
      else if (ok) resolve();
    });
    if (!ok) out.once('drain', () => resolve());
  });
}

/** Writes one bundle to `out`, parts in order, then the manifest from the digests it computed itself. */
export class BundleWriter {
  private readonly out: Writable;
  private readonly digests: Record<string, PartDigest> = {};
  private started = false;

  constructor(out: Writable) {
    this.out = out;
  }

  /** A part whose content is at hand (the small JSON parts). */
  async part(name: PartName, content: Buffer | string): Promise<PartDigest> {
    async function* one() {
      yield Buffer.isBuffer(content) ? content : Buffer.from(content, 'utf8');
    }
    return this.streamPart(name, one());
  }

  /** A part that arrives as a stream (the dump): written piece by piece as it comes. */
  async streamPart(name: PartName, src: AsyncIterable<Uint8Array>): Promise<PartDigest> {
    if (!this.started) {
      await write(this.out, MAGIC);
      this.started = true;
    }
    if (name in this.digests || name === PART.manifest) throw new Error(`bundle part ${name} written twice`);
    const nameBytes = Buffer.from(name, 'utf8');
    const head = Buffer.alloc(3);
    head.write('P', 0, 'latin1');
    head.writeUInt16BE(nameBytes.length, 1);
    await write(this.out, Buffer.concat([head, nameBytes]));
    const hash = createHash('sha256');
    let bytes = 0;
    for await (const chunk of src) {
      for (let off = 0; off < chunk.length; off += CHUNK) {
        const piece = Buffer.from(chunk.buffer, chunk.byteOffset + off, Math.min(CHUNK, chunk.length - off));
        const h = Buffer.alloc(5);
        h.write('D', 0, 'latin1');
        h.writeUInt32BE(piece.length, 1);
        hash.update(piece);
        bytes += piece.length;
        await write(this.out, Buffer.concat([h, piece]));
      }
    }
    await write(this.out, Buffer.from('E', 'latin1'));
    const d = { bytes, sha256: hash.digest('hex') };
    this.digests[name] = d;
    return d;
  }

  /** The manifest (with the digests of every part written) and the end mark. */
  async finish(manifest: Omit<Manifest, 'parts'>): Promise<Manifest> {
    const missing = DATA_PARTS.filter((p) => !(p in this.digests));
    if (missing.length > 0) throw new Error(`bundle finished without ${missing.join(', ')}`);
    const full: Manifest = { ...manifest, parts: { ...this.digests } };
    const body = Buffer.from(JSON.stringify(full, null, 2) + '\n', 'utf8');
    const nameBytes = Buffer.from(PART.manifest, 'utf8');
    const head = Buffer.alloc(3);
    head.write('P', 0, 'latin1');
    head.writeUInt16BE(nameBytes.length, 1);
    const len = Buffer.alloc(5);
    len.write('D', 0, 'latin1');
    len.writeUInt32BE(body.length, 1);
    await write(this.out, Buffer.concat([head, nameBytes, len, body, Buffer.from('EZ', 'latin1')]));
    return full;
  }
}

// ---- reading --------------------------------------------------------------------------------------------------------

/** A bundle that is not what the writer wrote: refused before anything is restored (exit 2). */
export function damaged(why: string): OperationError {
  return new OperationError(`the backup bundle is damaged: ${why}`, {
    hint: 'take the bundle again (--backup DIR), or use an older one; see docs/runbook.md "Restoring staging onto a new server"',
    exitCode: 2,
  });
}

export interface ReadBundle {
  manifest: Manifest;
  /** The small parts (everything but the dump), whole. */
  parts: Map<string, Buffer>;
}

/**
 * Passes a plain bundle on (to the encrypter) chunk by chunk, each through `reader`, which checks it: a bundle
 * that is not what its manifest says fails the stream before it is kept anywhere.
 */
export async function* checkedOnTheWay(
  src: AsyncIterable<unknown>,
  reader: BundleReader,
  count: (n: number) => void = () => undefined,
): AsyncGenerator<Uint8Array> {
  for await (const chunk of src) {
    const c = chunk as Buffer;
    count(c.length);
    await reader.push(c);
    yield c;
  }
}

/**
 * Reads a bundle as it arrives. Every part but the dump is kept whole (they are small); the dump's pieces go to
 * `onDump` (a file on the laptop for a restore, nowhere while a backup is checked on its way to disk).
 */
export class BundleReader {
  private buf: Buffer = Buffer.alloc(0);
  private magicSeen = false;
  /** Bytes of the current piece still to come. */
  private dataLeft = 0;
  private current: { name: string; hash: Hash; bytes: number; pieces: Buffer[] } | undefined;
  private readonly digests = new Map<string, PartDigest>();
  private readonly whole = new Map<string, Buffer>();
  private ended = false;
  private readonly onDump: (piece: Buffer) => void | Promise<void>;

  constructor(onDump: (piece: Buffer) => void | Promise<void> = () => undefined) {
    this.onDump = onDump;
  }

  /**
   * The next bytes of the stream, in chunks of any size. Headers are gathered (they are a few bytes); the data of a
   * piece goes on as it arrives, so a large piece costs no copying however small the chunks.
   */
  async push(chunk: Uint8Array): Promise<void> {
    let input = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length);
    while (input.length > 0) {
      if (this.dataLeft > 0) {
        const piece = input.subarray(0, this.dataLeft);
        input = input.subarray(piece.length);
        this.dataLeft -= piece.length;
        await this.data(Buffer.from(piece));
        continue;
      }
      this.buf = this.buf.length === 0 ? input : Buffer.concat([this.buf, input]);
      input = Buffer.alloc(0);
      const rest = await this.headers();
      if (rest !== undefined) input = rest;
    }
  }

  /** Reads the records whose headers are complete in `buf`; returns the bytes after a D header (its data). */
  private async headers(): Promise<Buffer | undefined> {
    if (!this.magicSeen) {
      if (this.buf.length < MAGIC.length) {
        if (!MAGIC.subarray(0, this.buf.length).equals(this.buf))
          throw damaged('it does not start as a codex-k8s bundle');
        return undefined;
      }
      if (!this.buf.subarray(0, MAGIC.length).equals(MAGIC)) throw damaged('it does not start as a codex-k8s bundle');
      this.magicSeen = true;
      this.buf = this.buf.subarray(MAGIC.length);
    }
    for (;;) {
      if (this.buf.length === 0) return undefined;
      if (this.ended) throw damaged('there are bytes after its end');
      const type = String.fromCharCode(this.buf[0] as number);
      if (type === 'P') {
        if (this.buf.length < 3) return undefined;
        const n = this.buf.readUInt16BE(1);
        if (this.buf.length < 3 + n) return undefined;
        if (this.current) throw damaged(`part ${this.current.name} never ends`);
        const name = this.buf.subarray(3, 3 + n).toString('utf8');
        if (this.digests.has(name)) throw damaged(`part ${name} appears twice`);
        if (![...DATA_PARTS, PART.manifest].includes(name)) throw damaged(`unknown part ${JSON.stringify(name)}`);
        this.current = { name, hash: createHash('sha256'), bytes: 0, pieces: [] };
        this.buf = this.buf.subarray(3 + n);
      } else if (type === 'D') {
        if (this.buf.length < 5) return undefined;
        const n = this.buf.readUInt32BE(1);
        if (n > CHUNK) throw damaged(`a piece of ${n} bytes is larger than any the writer makes`);
        if (!this.current) throw damaged('data outside any part');
        const rest = this.buf.subarray(5);
        this.buf = Buffer.alloc(0);
        this.dataLeft = n;
        return rest;
      } else if (type === 'E') {
        const c = this.current;
        if (!c) throw damaged('a part ends that never began');
        this.digests.set(c.name, { bytes: c.bytes, sha256: c.hash.digest('hex') });
        if (c.name !== PART.dump) this.whole.set(c.name, Buffer.concat(c.pieces));
        this.current = undefined;
        this.buf = this.buf.subarray(1);
      } else if (type === 'Z') {
        if (this.current) throw damaged(`part ${this.current.name} never ends`);
        if (!this.digests.has(PART.manifest)) throw damaged('it ends without its manifest');
        this.ended = true;
        this.buf = this.buf.subarray(1);
      } else {
        throw damaged(`unknown record type 0x${(this.buf[0] as number).toString(16)}`);
      }
    }
  }

  private async data(piece: Buffer): Promise<void> {
    const c = this.current as NonNullable<BundleReader['current']>;
    c.hash.update(piece);
    c.bytes += piece.length;
    if (c.name === PART.dump) await this.onDump(piece);
    else c.pieces.push(piece);
  }

  /** At the end of the stream: the manifest, checked against every part read. */
  end(): ReadBundle {
    if (!this.magicSeen) throw damaged('it is empty');
    if (this.dataLeft > 0 || !this.ended) throw damaged('it is truncated (no end mark)');
    const raw = this.whole.get(PART.manifest) as Buffer;
    const manifest = parseManifest(raw);
    for (const name of DATA_PARTS) {
      const want = manifest.parts[name];
      const got = this.digests.get(name);
      if (!want) throw damaged(`the manifest does not list ${name}`);
      if (!got) throw damaged(`part ${name} is missing`);
      if (want.bytes !== got.bytes || want.sha256 !== got.sha256)
        throw damaged(
          `${name} does not match the manifest (${got.bytes} bytes, sha256 ${got.sha256}; the manifest says ${want.bytes} bytes, sha256 ${want.sha256})`,
        );
    }
    const extra = Object.keys(manifest.parts).filter((n) => !this.digests.has(n));
    if (extra.length > 0) throw damaged(`the manifest lists parts the bundle lacks: ${extra.join(', ')}`);
    return { manifest, parts: this.whole };
  }
}

function parseManifest(raw: Buffer): Manifest {
  let m: Partial<Manifest>;
  try {
    m = JSON.parse(raw.toString('utf8')) as Partial<Manifest>;
  } catch {
    throw damaged('its manifest is not JSON');
  }
  if (m.format !== 1) throw damaged(`its manifest has format ${String(m.format)}, this tool reads format 1`);
  if (
    typeof m.createdAt !== 'string' ||
    typeof m.server?.hostname !== 'string' ||
    typeof m.server.namespace !== 'string' ||
    typeof m.postgres?.serverVersion !== 'string' ||
    typeof m.postgres.rows !== 'object' ||
    m.postgres.rows === null ||
    Object.values(m.postgres.rows).some((n) => !Number.isSafeInteger(n) || n < 0) ||
    typeof m.parts !== 'object' ||
    m.parts === null
  )
    throw damaged('its manifest lacks createdAt, server, postgres.rows or parts');
  return m as Manifest;
}

/** The secrets part, checked: a restore must not make up a value that is missing. */
export function parseSecrets(raw: Buffer | undefined): BundleSecrets {
  if (!raw) throw damaged(`part ${PART.secrets} is missing`);
  let s: Partial<BundleSecrets>;
  try {
    s = JSON.parse(raw.toString('utf8')) as Partial<BundleSecrets>;
  } catch {
    throw damaged(`${PART.secrets} is not JSON`);
  }
  const pg = s.postgres;
  if (!pg || [pg.user, pg.password, pg.db].some((v) => typeof v !== 'string' || v === ''))
    throw damaged(`${PART.secrets} lacks the PostgreSQL user, password or database`);
  if (s.webhookSecret !== undefined && (typeof s.webhookSecret !== 'string' || s.webhookSecret === ''))
    throw damaged(`${PART.secrets}: the webhook secret is not a non-empty string`);
  return { postgres: { user: pg.user, password: pg.password, db: pg.db }, webhookSecret: s.webhookSecret };
}

/** Rows that differ between two counts, as "schema.table: want N, found M" lines. */
export function rowCountMismatches(
  want: Readonly<Record<string, number>>,
  found: Readonly<Record<string, number>>,
): string[] {
  const names = [...new Set([...Object.keys(want), ...Object.keys(found)])].sort();
  return names
    .filter((n) => want[n] !== found[n])
    .map((n) => `${n}: the bundle has ${want[n] ?? 'no such table'}, the database ${found[n] ?? 'no such table'}`);
}
