// age encryption of backup bundles (the age-encryption package: the age format's reference TypeScript implementation).
// A bundle is encrypted to a public key (CODEXK8S_BACKUP_AGE_RECIPIENT, `age1...`), or with a passphrase asked on a
// terminal. age authenticates every 64 KiB piece and marks the last one, so a wrong key, a flipped byte and a
// truncated file all fail here, each named for what it most likely is.
import { readFileSync } from 'node:fs';
import { OperationError } from '../errors.mts';

// Loaded when a bundle is made or opened: every other launcher run starts without it (about 0.25 s of CPU).
const age = () => import('age-encryption');

export type BundleKey = { recipient: string } | { passphrase: string };
export type BundleIdentity = { identities: string[] } | { passphrase: string };

const AGE_IDENTITY = /^AGE-SECRET-KEY-(?:PQ-)?1[02-9AC-HJ-NP-Z]+$/;

/** The encrypted form of `plain`, as a stream (nothing is held whole). */
export async function encryptStream(
  plain: ReadableStream<Uint8Array>,
  key: BundleKey,
): Promise<ReadableStream<Uint8Array>> {
  const e = new (await age()).Encrypter();
  if ('recipient' in key) e.addRecipient(key.recipient);
  else e.setPassphrase(key.passphrase);
  return e.encrypt(plain);
}

/**
 * The plain bundle, as a stream. A wrong key fails before the first byte; damage fails at the piece it is in, so a
 * caller must not act on what it read until the stream has ended without an error.
 */
export async function decryptStream(
  sealed: ReadableStream<Uint8Array>,
  id: BundleIdentity,
  file: string,
): Promise<ReadableStream<Uint8Array>> {
  const d = new (await age()).Decrypter();
  if ('passphrase' in id) d.addPassphrase(id.passphrase);
  else for (const i of id.identities) d.addIdentity(i);
  try {
    return await d.decrypt(sealed);
  } catch (e) {
    throw explainDecryptError(e, file, id);
  }
}

/** What an age error means for the person restoring. */
export function explainDecryptError(e: unknown, file: string, id: BundleIdentity): OperationError {
  const msg = (e as Error).message ?? String(e);
  const which = 'passphrase' in id ? 'the passphrase' : 'CODEXK8S_BACKUP_AGE_IDENTITY_FILE';
  if (/no identity matched/.test(msg))
    return new OperationError(`${file}: ${which} does not open this bundle (wrong key or passphrase)`, {
      hint:
        'passphrase' in id
          ? 'type the passphrase the bundle was made with; a bundle made for an age key needs CODEXK8S_BACKUP_AGE_IDENTITY_FILE'
          : 'point CODEXK8S_BACKUP_AGE_IDENTITY_FILE at the secret key of the recipient the bundle was made for',
      exitCode: 2,
    });
  if (/invalid tag|unexpected end|truncat|last chunk|premature/i.test(msg))
    return new OperationError(`${file} is damaged or truncated (age refused a piece of it: ${msg})`, {
      hint: 'copy the bundle again and compare its size; or use an older bundle',
      exitCode: 2,
    });
  return new OperationError(`${file} is not an age-encrypted backup bundle (${msg})`, {
    hint: 'give the .age file written by --backup',
    exitCode: 2,
  });
}

/** The identities (`AGE-SECRET-KEY-1...` lines) in an identity file, as age-keygen writes it; comments skipped. */
export function readIdentityFile(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new OperationError(
      `CODEXK8S_BACKUP_AGE_IDENTITY_FILE: cannot read ${path} (${(e as NodeJS.ErrnoException).code})`,
      {
        hint: 'the file age-keygen wrote (it holds a line AGE-SECRET-KEY-1...)',
        exitCode: 2,
      },
    );
  }
  const ids = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  const bad = ids.filter((l) => !AGE_IDENTITY.test(l));
  if (ids.length === 0 || bad.length > 0)
    throw new OperationError(
      `CODEXK8S_BACKUP_AGE_IDENTITY_FILE: ${path} ${ids.length === 0 ? 'holds no identity' : `has ${bad.length} line(s) that are not an age identity`}`,
      { hint: 'expected lines AGE-SECRET-KEY-1... (as age-keygen writes them); comments start with #', exitCode: 2 },
    );
  return ids;
}

/** A Node stream as the web stream age works on, and back. */
export function toWeb(src: AsyncIterable<Uint8Array>): ReadableStream<Uint8Array> {
  const it = src[Symbol.asyncIterator]();
  return new ReadableStream<Uint8Array>({
    async pull(c) {
      const r = await it.next();
      if (r.done) c.close();
      else c.enqueue(r.value instanceof Uint8Array ? r.value : new Uint8Array(r.value));
    },
    async cancel() {
      await it.return?.();
    },
  });
}
