// Network helpers shared by the test harnesses.
import { createServer } from 'node:net';

/** A TCP port that was free a moment ago on `host` (the caller binds it next). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}
