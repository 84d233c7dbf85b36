// lib/backup/bundle.mts and crypt.mts: the bundle's format, its checks, and age around it (the real age-encryption
// package: real keys, real ciphertext). Every refusal is exit 2 with a message that says what is wrong.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import {
  BundleReader,
  BundleWriter,
  MAGIC,
  PART,
  parseSecrets,
  rowCountMismatches,
} from '../../bootstrap/lib/backup/bundle.mts';
import type { Manifest } from '../../bootstrap/lib/backup/bundle.mts';
import { decryptStream, encryptStream, explainDecryptError, toWeb } from '../../bootstrap/lib/backup/crypt.mts';
import type { BundleIdentity, BundleKey } from '../../bootstrap/lib/backup/crypt.mts';
import { parseRowCounts, pgRestoreWords, pgExecArgv } from '../../bootstrap/lib/backup/database.mts';
import { restoreConflicts } from '../../bootstrap/lib/backup/server.mts';
import type { PendingRestore } from '../../bootstrap/lib/backup/server.mts';
import { OperationError } from '../../bootstrap/lib/errors.mts';

const SECRETS = {
  postgres: { user: 'codex', password: 'pw-0123456789abcdef', db: 'codex_k8s' },
  webhookSecret: 'w'.repeat(64),
};
const META: Omit<Manifest, 'parts'> = {
  format: 1,
  createdAt: '2026-12-07T03:00:00.000Z',
  server: { hostname: 'staging-a', namespace: 'codex-k8s-staging', mode: 'local' },
  postgres: { serverVersion: '17.7', rows: { 'public.github_deliveries': 3 } },
};

/** A plain bundle whose dump is `dump` (written in two pieces, as a stream would). */
async function plainBundle(dump: Buffer): Promise<Buffer> {
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (c: Buffer) => chunks.push(c));
  const w = new BundleWriter(out);
  await w.part(PART.secrets, JSON.stringify(SECRETS));
  await w.part(PART.journal, '{"version":1,"steps":{},"history":[]}\n');
  await w.part(PART.pins, '[]\n');
  async function* pieces() {
    yield dump.subarray(0, 1000);
    yield dump.subarray(1000);
  }
  await w.streamPart(PART.dump, pieces());
  await w.finish(META);
  out.end();
  return Buffer.concat(chunks);
}

async function read(
  plain: Buffer,
  split = 777,
): Promise<{ parts: Map<string, Buffer>; manifest: Manifest; dump: Buffer }> {
  const dump: Buffer[] = [];
  const r = new BundleReader((p) => void dump.push(p));
  for (let i = 0; i < plain.length; i += split) await r.push(plain.subarray(i, i + split));
  const { manifest, parts } = r.end();
  return { manifest, parts, dump: Buffer.concat(dump) };
}

async function collect(s: ReadableStream<Uint8Array>): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of s as unknown as AsyncIterable<Uint8Array>) out.push(Buffer.from(c));
  return Buffer.concat(out);
}

async function seal(plain: Buffer, key: BundleKey): Promise<Buffer> {
  async function* one() {
    yield plain;
  }
  return collect(await encryptStream(toWeb(one()), key));
}

async function open(sealed: Buffer, id: BundleIdentity): Promise<Buffer> {
  async function* one() {
    yield sealed;
  }
  try {
    return await collect(await decryptStream(toWeb(one()), id, 'b.age'));
  } catch (e) {
    throw e instanceof OperationError ? e : explainDecryptError(e, 'b.age', id);
  }
}

const dump = Buffer.from(Array.from({ length: 3 * 1024 * 1024 + 17 }, (_, i) => (i * 7) & 255));

test('bundle: what the writer wrote, the reader gives back, in any split of the stream, with the manifest of every part', async () => {
  const small = dump.subarray(0, 5000);
  for (const [d, splits] of [
    [small, [1, 5, 4999]],
    [dump, [777, 1 << 16, 1 << 20, Infinity]],
  ] as const) {
    const plain = await plainBundle(d);
    assert.ok(plain.subarray(0, MAGIC.length).equals(MAGIC));
    for (const split of splits) {
      const r = await read(plain, Math.min(split, plain.length));
      assert.ok(r.dump.equals(d), `dump at split ${split}`);
      assert.equal(r.manifest.parts[PART.dump]?.bytes, d.length);
      assert.deepEqual(parseSecrets(r.parts.get(PART.secrets)), SECRETS);
      assert.deepEqual(r.manifest.postgres.rows, META.postgres.rows);
    }
  }
});

test('bundle: a missing end, a changed byte of a part, or a tampered manifest are refused (exit 2) by what they are', async () => {
  const plain = await plainBundle(dump);
  await assert.rejects(read(plain.subarray(0, plain.length - 1)), (e: OperationError) => {
    assert.equal(e.exitCode, 2);
    assert.match(e.message, /truncated \(no end mark\)/);
    return true;
  });
  // The first byte of the dump's data: after the magic, the three small parts and the dump's part header.
  const at = plain.indexOf(Buffer.from(PART.dump)) + PART.dump.length + 5;
  const flipped = Buffer.from(plain);
  flipped[at] = (flipped[at] as number) ^ 1;
  await assert.rejects(read(flipped), /postgres\.dump does not match the manifest/);
  const m = plain.indexOf(Buffer.from('"rows"'));
  const tampered = Buffer.concat([plain.subarray(0, m), Buffer.from('"rowz"'), plain.subarray(m + 6)]);
  await assert.rejects(read(tampered), /manifest lacks/);
  await assert.rejects(read(Buffer.from('not a bundle at all, no')), /does not start as a codex-k8s bundle/);
});

test('age: a bundle opens with its key or passphrase only; a wrong key, a truncated or a flipped file are each named', async () => {
  const plain = await plainBundle(dump);
  const id = await generateX25519Identity();
  const other = await generateX25519Identity();
  const sealed = await seal(plain, { recipient: await identityToRecipient(id) });
  assert.ok((await read(await open(sealed, { identities: [id] }))).dump.equals(dump));
  const refused = (re: RegExp) => (e: OperationError) => {
    assert.ok(e instanceof OperationError, String(e));
    assert.equal(e.exitCode, 2);
    assert.match(e.message, re);
    return true;
  };
  await assert.rejects(open(sealed, { identities: [other] }), refused(/does not open this bundle \(wrong key/));
  await assert.rejects(open(sealed, { passphrase: 'nope' }), refused(/passphrase does not open/));
  await assert.rejects(
    open(sealed.subarray(0, sealed.length - 100), { identities: [id] }),
    refused(/damaged or truncated/),
  );
  // Cut exactly at a 64 KiB piece boundary: age still knows the last piece is missing.
  await assert.rejects(
    open(sealed.subarray(0, sealed.length - 65552), { identities: [id] }),
    refused(/damaged or truncated/),
  );
  const flipped = Buffer.from(sealed);
  flipped[Math.floor(sealed.length / 2)] = (flipped[Math.floor(sealed.length / 2)] as number) ^ 0x10;
  await assert.rejects(open(flipped, { identities: [id] }), refused(/damaged or truncated/));
  await assert.rejects(open(Buffer.from('hello'), { identities: [id] }), refused(/not an age-encrypted backup bundle/));
});

test('age: a passphrase bundle opens with the passphrase', async () => {
  const plain = Buffer.concat([MAGIC, Buffer.from('Z')]);
  const sealed = await seal(plain, { passphrase: 'correct horse battery staple' });
  assert.ok((await open(sealed, { passphrase: 'correct horse battery staple' })).equals(plain));
});

test('secrets part: a missing password is refused, never made up', () => {
  assert.throws(
    () => parseSecrets(Buffer.from(JSON.stringify({ postgres: { user: 'codex', password: '', db: 'x' } }))),
    /lacks the PostgreSQL user, password or database/,
  );
});

test('row counts: parsed exactly; mismatches name the table and both counts', () => {
  assert.deepEqual(parseRowCounts('{"public.a" : 3, "public.b" : 0}'), { 'public.a': 3, 'public.b': 0 });
  assert.throws(() => parseRowCounts('{"public.a": -1}'), /not a count/);
  assert.deepEqual(rowCountMismatches({ 'public.a': 3, 'public.b': 1 }, { 'public.a': 3, 'public.c': 2 }), [
    'public.b: the bundle has 1, the database no such table',
    'public.c: the bundle has no such table, the database 2',
  ]);
});

test('database argv: exec into the one PostgreSQL pod; the restore is one transaction that replaces what the dump holds', () => {
  const d = { namespace: 'ns', user: 'codex', db: 'codex_k8s' };
  assert.deepEqual(pgExecArgv(d, true, pgRestoreWords(d)).slice(3, 10), [
    '-n',
    'ns',
    'exec',
    '-i',
    'postgres-0',
    '-c',
    'postgres',
  ]);
  for (const f of ['--single-transaction', '--exit-on-error', '--clean', '--if-exists', '--no-owner'])
    assert.ok(pgRestoreWords(d).includes(f), f);
});

test('restore conflicts: other credentials, another webhook secret, another wiring, or rows without --restore-overwrite', () => {
  const p: PendingRestore = {
    dir: '/x',
    manifest: { ...META, parts: {} },
    secrets: SECRETS,
    github: { repo: 'o/r', repoId: 7, salt: 's', variables: [], secrets: {}, webhooks: [] },
    options: { overwrite: false, source: 'b.age' },
    dumpFile: '/x/postgres.dump',
  };
  const same = {
    POSTGRES_USER: 'codex',
    POSTGRES_PASSWORD: SECRETS.postgres.password,
    POSTGRES_DB: 'codex_k8s',
  };
  assert.deepEqual(restoreConflicts(p, { namespace: 'ns' }), []);
  assert.deepEqual(
    restoreConflicts(p, {
      namespace: 'ns',
      credentials: same,
      webhookSecret: SECRETS.webhookSecret,
      github: p.github,
      rows: 0,
    }),
    [],
  );
  const all = restoreConflicts(p, {
    namespace: 'ns',
    credentials: { ...same, POSTGRES_PASSWORD: 'other' },
    webhookSecret: 'x'.repeat(64),
    github: { ...p.github!, repoId: 8 },
    rows: 5,
  });
  assert.equal(all.length, 4);
  assert.match(
    all.join('\n'),
    /other credentials[\s\S]*another webhook secret[\s\S]*another repository wiring[\s\S]*not empty \(5 rows\)/,
  );
  assert.deepEqual(
    restoreConflicts({ ...p, options: { ...p.options, overwrite: true } }, { namespace: 'ns', rows: 5 }),
    [],
  );
});
