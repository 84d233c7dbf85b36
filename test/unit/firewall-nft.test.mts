// The firewall's rendered ruleset and its drift fingerprint against the real nft, in a throw-away network
// namespace (unshare --net): the host's own ruleset is never touched.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  renderRuleset,
  tableFingerprint,
  parseLoadedTable,
  tableDrift,
  TABLE,
} from '../../bootstrap/lib/harden/firewall.mts';
import type { FirewallWanted } from '../../bootstrap/lib/harden/firewall.mts';

const W: FirewallWanted = { sshPorts: [22], podCidr: '10.42.0.0/16', serviceCidr: '10.43.0.0/16', kubeApiAllow: [] };
const canRun = process.getuid?.() === 0 && spawnSync('sh', ['-c', 'command -v nft && command -v unshare']).status === 0;

/** Runs a shell script inside a fresh network namespace; its stdout. */
function inNetns(script: string): string {
  const r = spawnSync('unshare', ['--net', 'sh', '-ec', script], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

test(
  'firewall: the rendered ruleset loads in real nft; the fingerprint ignores handles and catches a rule edited by hand',
  { skip: canRun ? false : 'needs root, nft and unshare' },
  () => {
    const dir = mkdtempSync(join(tmpdir(), 'ck8s-nft-'));
    const file = join(dir, 'codex-k8s.nft');
    writeFileSync(file, renderRuleset(W));
    const out = inNetns(
      [
        `nft -f ${file}`,
        `nft -j list table inet ${TABLE}`,
        'echo ---',
        // The same file again: the table is replaced and its rules get new handles.
        `nft -f ${file}`,
        `nft -j list table inet ${TABLE}`,
        'echo ---',
        // Traffic: the marker rule's counter moves (loopback packets cross the input hook).
        'ip link set lo up',
        // A TCP connection attempt to a closed port: SYN and RST cross the input hook.
        `'${process.execPath}' -e "require('net').connect(9, '127.0.0.1').on('error', () => {})"`,
        `nft -j list table inet ${TABLE}`,
        'echo ---',
        // A hand edit that keeps the rule count: 443 becomes 8443.
        `h=$(nft -a list chain inet ${TABLE} input | awk '/dport \\{ 22, 80, 443 \\}/ { print $NF }')`,
        `nft replace rule inet ${TABLE} input handle "$h" tcp dport '{ 22, 80, 8443 }' accept`,
        `nft -j list table inet ${TABLE}`,
      ].join('\n'),
    );
    const [first, reloaded, counted, edited] = out.split('---\n') as [string, string, string, string];
    assert.deepEqual(
      tableDrift(parseLoadedTable(first), W),
      [],
      'the loaded table matches the rendered rules (marker, count, policy)',
    );
    assert.equal(tableFingerprint(reloaded), tableFingerprint(first), 'a reload with new handles is the same table');
    assert.match(counted, /"packets": [1-9]/, 'traffic was counted');
    assert.equal(tableFingerprint(counted), tableFingerprint(first), 'counters moving is not a change');
    assert.deepEqual(tableDrift(parseLoadedTable(edited), W), [], 'marker and count alone cannot see this edit');
    assert.notEqual(tableFingerprint(edited), tableFingerprint(first), 'the fingerprint does');
  },
);
