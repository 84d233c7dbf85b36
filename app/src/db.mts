// PostgreSQL access: the start-up migration and the three queries the service makes.
import pg from 'pg';

// One idempotent migration. The advisory lock serialises replicas that start together: two concurrent
// CREATE TABLE IF NOT EXISTS can still collide on the catalog's unique index (pg_type) without it.
const MIGRATION_LOCK_KEY = 'codex-k8s:migrate';
const MIGRATION_SQL = `
CREATE TABLE IF NOT EXISTS github_deliveries (
  delivery_id text PRIMARY KEY,
  event text NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now(),
  payload jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS github_deliveries_received_at_idx ON github_deliveries (received_at DESC);
`;

export async function migrate(pool: pg.Pool): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [MIGRATION_LOCK_KEY]);
    await client.query(MIGRATION_SQL);
    await client.query('COMMIT');
  } catch (e) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw e;
  } finally {
    client.release();
  }
}

/** Stores a delivery unless its id is already there: true = new row, false = redelivery (nothing written). */
export async function storeDelivery(
  pool: pg.Pool,
  delivery: string,
  event: string,
  payloadJson: string,
): Promise<boolean> {
  // The payload goes in as the text GitHub signed and PostgreSQL parses it; ON CONFLICT makes a concurrent
  // redelivery race-free (no check-then-insert).
  const r = await pool.query(
    'INSERT INTO github_deliveries (delivery_id, event, payload) VALUES ($1, $2, $3::jsonb) ON CONFLICT (delivery_id) DO NOTHING RETURNING delivery_id',
    [delivery, event, payloadJson],
  );
  return r.rowCount === 1;
}

export interface LatestDelivery {
  delivery: string;
  event: string;
  receivedAt: string;
}

export async function latestDelivery(pool: pg.Pool): Promise<LatestDelivery | undefined> {
  const r = await pool.query<{ delivery_id: string; event: string; received_at: Date }>(
    'SELECT delivery_id, event, received_at FROM github_deliveries ORDER BY received_at DESC, delivery_id DESC LIMIT 1',
  );
  const row = r.rows[0];
  return row === undefined
    ? undefined
    : { delivery: row.delivery_id, event: row.event, receivedAt: row.received_at.toISOString() };
}

/** Resolves when PostgreSQL answers SELECT 1 within `timeoutMs`; rejects with the reason otherwise. */
export async function ping(pool: pg.Pool, timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`PostgreSQL did not answer SELECT 1 within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    await Promise.race([pool.query('SELECT 1'), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** PostgreSQL rejected the payload as jsonb (for instance a \u0000 inside a string): the sender's fault, a 400. */
export function isPayloadRejected(e: unknown): boolean {
  const code = (e as { code?: unknown }).code;
  return code === '22P02' || code === '22P05' || code === '54000';
}
