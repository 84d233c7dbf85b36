// 00_preflight beyond the machine facts: ports, apt locks, DNS of the domain, outbound HTTPS probes.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  parseListeners,
  evaluatePorts,
  aptLockHolders,
  evaluateDns,
  outboundTargets,
  evaluateOutbound,
  probe,
} from '../../bootstrap/lib/preflight.mts';
import { NODE, OUTBOUND_ENDPOINTS } from '../../bootstrap/lib/versions.mts';

const SS = [
  'LISTEN 0      4096         0.0.0.0:80        0.0.0.0:*    users:(("nginx",pid=812,fd=6),("nginx",pid=811,fd=6))',
  'LISTEN 0      4096               *:6443            *:*    users:(("k3s-server",pid=1201,fd=14))',
  'LISTEN 0      128          0.0.0.0:22        0.0.0.0:*    users:(("sshd",pid=640,fd=3))',
  'LISTEN 0      4096       127.0.0.1:10248     0.0.0.0:*',
].join('\n');

test('ports: parsed from ss, with process names when ss can see them', () => {
  const l = parseListeners(SS);
  assert.deepEqual(l[0], { port: 80, address: '0.0.0.0', processes: ['nginx'] });
  assert.deepEqual(l[1], { port: 6443, address: '*', processes: ['k3s-server'] });
  assert.deepEqual(l[3], { port: 10248, address: '127.0.0.1', processes: [] });
});

test('ports: free is ok, our k3s is ok on a re-run, anything else fails with the process and a fix', () => {
  const checks = Object.fromEntries(evaluatePorts(parseListeners(SS)).map((c) => [c.name, c]));
  assert.equal(checks['port 443']?.status, 'ok');
  assert.equal(checks['port 6443']?.status, 'ok');
  assert.match(checks['port 6443']?.reason ?? '', /our k3s/);
  assert.equal(checks['port 80']?.status, 'fail');
  assert.match(checks['port 80']?.reason ?? '', /in use by nginx on 0\.0\.0\.0/);
  assert.match(checks['port 80']?.fix ?? '', /ss -ltnp 'sport = :80'/);
  const unknown = evaluatePorts(parseListeners('LISTEN 0 10 [::]:443 [::]:*'))[1];
  assert.equal(unknown?.status, 'fail', 'a listener whose process ss cannot see is not assumed to be ours');
});

test('apt locks: only the dpkg/apt lock files count', () => {
  const json = JSON.stringify({
    locks: [
      { command: 'unattended-upgr', pid: 901, path: '/var/lib/dpkg/lock-frontend' },
      { command: 'cron', pid: 500, path: '/run/crond.pid' },
      { command: 'x', pid: 1, path: null },
    ],
  });
  assert.deepEqual(aptLockHolders(json), ['unattended-upgr (pid 901) on /var/lib/dpkg/lock-frontend']);
  assert.deepEqual(aptLockHolders(''), []);
});

test('dns: not resolving fails, our address is ok, another address warns (1:1 NAT is legitimate)', () => {
  assert.equal(evaluateDns('s.example.com', new Error('ENOTFOUND'), ['10.0.0.5']).status, 'fail');
  assert.equal(evaluateDns('s.example.com', ['10.0.0.5'], ['127.0.0.1', '10.0.0.5']).status, 'ok');
  const nat = evaluateDns('s.example.com', ['203.0.113.7'], ['10.0.0.5']);
  assert.equal(nat.status, 'warn');
  assert.match(nat.reason, /203\.0\.113\.7, not an address of this server \(10\.0\.0\.5\)/);
});

test('outbound targets: every artifact host, the GitHub API and the registries, once per host; the mirror replaces vendors', () => {
  const base = { mode: 'local', githubApiUrl: 'https://api.github.com', arch: 'x64' as const };
  const hosts = outboundTargets(base).map((t) => new URL(t.url).host);
  assert.ok(hosts.includes(new URL(NODE.baseUrl).host));
  assert.ok(hosts.includes('api.github.com'));
  assert.ok(hosts.includes('registry-1.docker.io'));
  assert.equal(new Set(hosts).size, hosts.length, 'one probe per host');
  assert.ok(!hosts.includes('acme-v02.api.letsencrypt.org'), "Let's Encrypt only in server mode");
  assert.ok(outboundTargets({ ...base, mode: 'server' }).some((t) => t.url.includes('letsencrypt')));
  const mirrored = outboundTargets({ ...base, mirror: 'http://10.0.0.9:8080/m' }).map((t) => new URL(t.url).host);
  assert.ok(mirrored.includes('10.0.0.9:8080'));
  assert.ok(!mirrored.includes(new URL(NODE.baseUrl).host), 'artifacts come from the mirror only');
  assert.ok(OUTBOUND_ENDPOINTS.every((e) => e.url.startsWith('https://')));
});

const server = createServer((req, res) => {
  res.statusCode = req.url === '/missing' ? 404 : 200;
  res.end();
});
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
const port = (server.address() as AddressInfo).port;
after(() => server.close());

test('outbound probes: any HTTP answer is reachable; a closed port fails (or warns) naming the host and the reason', async () => {
  assert.deepEqual(await probe(`http://127.0.0.1:${port}/missing`), { ok: true, status: 404 });
  const closed = await new Promise<number>((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  const checks = await evaluateOutbound(
    [
      { url: `http://127.0.0.1:${port}/`, why: 'the mirror' },
      { url: `http://127.0.0.1:${closed}/`, why: 'helm download' },
    ],
    'fail',
    2000,
  );
  assert.equal(checks[0]?.status, 'ok');
  assert.equal(checks[1]?.status, 'fail');
  assert.match(checks[1]?.reason ?? '', /unreachable: ECONNREFUSED \(needed for helm download\)/);
  const warned = await evaluateOutbound([{ url: `http://127.0.0.1:${closed}/`, why: 'x' }], 'warn', 2000);
  assert.equal(warned[0]?.status, 'warn');
});
