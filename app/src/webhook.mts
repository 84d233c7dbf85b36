// Pure pieces of the GitHub webhook receiver: the signature check and the header validation.
import { createHmac, timingSafeEqual } from 'node:crypto';

/** GitHub's documented limit is 25 MB; this service stores payloads in PostgreSQL and takes at most 1 MiB. */
export const MAX_BODY_BYTES = 1024 * 1024;

const SIGNATURE_RE = /^sha256=([0-9a-fA-F]{64})$/;

/** The X-Hub-Signature-256 value GitHub sends for `body` signed with `secret`: "sha256=" + hex HMAC-SHA256. */
export function signBody(secret: string, body: Buffer | string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/**
 * True when `header` is a well-formed X-Hub-Signature-256 for `body` under `secret`. The comparison runs in constant
 * time over two 32-byte digests (the format check before it only looks at the header's shape, never the secret).
 */
export function verifySignature(secret: string, body: Buffer, header: string | undefined): boolean {
  const m = header === undefined ? null : SIGNATURE_RE.exec(header);
  if (m === null || m[1] === undefined) return false;
  const given = Buffer.from(m[1], 'hex');
  const want = createHmac('sha256', secret).update(body).digest();
  return given.length === want.length && timingSafeEqual(given, want);
}

// GitHub sends a GUID; accept any short printable token so a redelivery tool or the smoke check can use its own ids.
const DELIVERY_RE = /^[A-Za-z0-9._:-]{1,128}$/;
const EVENT_RE = /^[a-z][a-z0-9_]{0,63}$/;

export type Headers = Record<string, string | string[] | undefined>;

function one(h: Headers, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? undefined : v;
}

/** The delivery id and event from the request headers, or the reason they are unusable (a 400). */
export function deliveryHeaders(
  h: Headers,
): { ok: true; delivery: string; event: string } | { ok: false; error: string } {
  const delivery = one(h, 'x-github-delivery');
  const event = one(h, 'x-github-event');
  if (delivery === undefined || !DELIVERY_RE.test(delivery))
    return { ok: false, error: 'missing or malformed X-GitHub-Delivery header' };
  if (event === undefined || !EVENT_RE.test(event))
    return { ok: false, error: 'missing or malformed X-GitHub-Event header' };
  return { ok: true, delivery, event };
}
