// --check: each step's own --check output becomes one row of the live plan (bootstrap/lib/launcher/check.mts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseStepCheck, formatCheckReport } from '../../bootstrap/lib/launcher/check.mts';

test('a converged step, a drifting one (its ~ lines, colours stripped) and a check that could not run', () => {
  assert.deepEqual(parseStepCheck('20_install_k3s', 0, '20_install_k3s: converged\n', ''), {
    name: '20_install_k3s',
    status: 'ok',
    drift: [],
  });
  const out =
    '  - kernel module overlay: skipped (container)\n  ~ /etc/ssh/sshd_config.d/00-codex-k8s.conf differs\n  ~ \u001b[33mfail2ban\u001b[0m jail off\n\u001b[33m10_harden_host: 2 drift(s)\u001b[0m\n';
  assert.deepEqual(parseStepCheck('10_harden_host', 1, out, ''), {
    name: '10_harden_host',
    status: 'drift',
    drift: ['/etc/ssh/sshd_config.d/00-codex-k8s.conf differs', 'fail2ban jail off'],
  });
  const failed = parseStepCheck(
    '30_cluster_deps',
    1,
    '',
    'error: kubectl get failed: connection refused\nnext: start k3s\n',
  );
  assert.deepEqual(failed, {
    name: '30_cluster_deps',
    status: 'error',
    drift: [],
    error: 'kubectl get failed: connection refused',
  });
  assert.equal(parseStepCheck('40_postgres', 2, '', '').error, 'the check exited with code 2');
  assert.equal(
    parseStepCheck('40_postgres', 0, '40_postgres: 1 drift(s)\n', '').status,
    'error',
    'exit code and status line disagree',
  );
});

test('the report: one row per step, one line per drift, and the verdict', () => {
  const lines = formatCheckReport({
    converged: false,
    steps: [
      { name: '00_preflight', status: 'ok', drift: [] },
      { name: '10_harden_host', status: 'drift', drift: ['a', 'b'] },
      { name: '30_cluster_deps', status: 'error', drift: [], error: 'no cluster' },
    ],
  }).map((l) => l.replace(/\u001b\[[0-9;]*m/g, ''));
  assert.deepEqual(lines, [
    '  00_preflight     ok   ',
    '  10_harden_host   drift',
    '                     ~ a',
    '                     ~ b',
    '  30_cluster_deps  error  no cluster',
    '2 of 3 step(s) would change something (a run without --check applies it)',
  ]);
});
