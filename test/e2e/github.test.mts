// GitHub wiring end to end: the real launcher on this machine (token preflight) and step 70 on the sandbox server,
// both talking to the fake GitHub API (test/fakes/github) that the harness serves on the sandbox's host address.
// The earlier steps are out of scope here: the journal is seeded as if they had succeeded, and the runs use
// --only 70_github_repo.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTarget, footers } from './harness.mts';
import type { Target } from './harness.mts';
import { stepNames } from '../../bootstrap/lib/catalogue.mts';

const STEP = '70_github_repo';
const SERVER_MODE = { CODEXK8S_STAGING_DOMAIN: 'staging.e2e.example', CODEXK8S_LETSENCRYPT_EMAIL: 'ops@e2e.example' };
let t: Target;

async function webhookSecretOnServer(): Promise<string> {
  return (await t.sb.exec(['cat', '/etc/codex-k8s-bootstrap/secrets/github-webhook-secret'])).stdout.trim();
}

describe('GitHub wiring against a sandbox server and the fake GitHub API', { concurrency: false }, () => {
  before(async () => {
    t = await startTarget();
    await t.journalAsDone(stepNames().slice(0, stepNames().indexOf(STEP)));
  });
  after(async () => {
    await t?.stop();
  });

  it('a token without a permission stops the launcher before the server is contacted (exit 2)', async () => {
    const ssh = await t.sb.countAcceptedSsh();
    t.github.permissions.secrets = 'none';
    t.github.permissions.actions = 'read';
    try {
      const r = await t.launch(['--yes', '--only', STEP]);
      assert.equal(r.code, 2, r.output);
      assert.match(r.output, /the token lacks "Secrets: Read and write" on codex-k8s\/e2e-sandbox/);
      assert.ok(!/lacks "Actions/.test(r.output), 'read is what the probe proves for Actions');
      assert.equal(await t.sb.countAcceptedSsh(), ssh, 'no SSH connection was made');
      assert.equal(t.github.writes().length, 0);
    } finally {
      t.github.permissions.secrets = 'write';
      t.github.permissions.actions = 'write';
    }
  });

  it('local mode: the first run creates the variables and the sealed secret; the second run writes nothing', async () => {
    const first = await t.launch(['--yes', '--only', STEP]);
    assert.equal(first.code, 0, first.output);
    assert.match(footers(first.output)[STEP] ?? '', /^\+ changed \d+$/, first.output);
    assert.match(
      first.output,
      /ok\s+Administration: Read and write\s+POST \/repos\/codex-k8s\/e2e-sandbox\/actions\/runners\/registration-token/,
    );
    assert.equal(t.github.variables.get('CODEXK8S_MODE')?.value, 'local');
    assert.equal(t.github.variables.get('CODEXK8S_STAGING_NAMESPACE')?.value, 'codex-k8s-staging');
    const secret = await webhookSecretOnServer();
    assert.match(secret, /^[0-9a-f]{64}$/);
    assert.equal(
      t.github.secretValue('CODEXK8S_WEBHOOK_SECRET'),
      secret,
      'sealed on the server with tweetsodium, opened here with libsodium',
    );
    const mode = await t.sb.exec([
      'stat',
      '-c',
      '%a %U',
      '/etc/codex-k8s-bootstrap/secrets',
      '/etc/codex-k8s-bootstrap/secrets/github-webhook-secret',
    ]);
    assert.deepEqual(mode.stdout.trim().split('\n'), ['700 root', '600 root']);
    assert.equal(t.github.hooks.size, 0, 'no webhook in local mode');

    const writes = t.github.writes().length;
    const second = await t.launch(['--yes', '--only', STEP]);
    assert.equal(second.code, 0, second.output);
    assert.equal(footers(second.output)[STEP], '= unchanged', second.output);
    assert.equal(t.github.writes().length, writes, 'the second run made no write call');
    assert.equal(await webhookSecretOnServer(), secret, 'the secret is generated once');
    assert.deepEqual(t.github.problems, []);
  });

  it('server mode adds the domain and one webhook; again, nothing; back to local, both are removed', async () => {
    const r = await t.launch(['--yes', '--only', STEP], SERVER_MODE);
    assert.equal(r.code, 0, r.output);
    const hooks = [...t.github.hooks.values()];
    assert.equal(hooks.length, 1);
    assert.equal(hooks[0]?.config.url, 'https://staging.e2e.example/webhooks/github');
    assert.equal(hooks[0]?.config.secret, await webhookSecretOnServer());
    assert.equal(t.github.variables.get('CODEXK8S_STAGING_DOMAIN')?.value, 'staging.e2e.example');
    const writes = t.github.writes().length;
    const again = await t.launch(['--yes', '--only', STEP], SERVER_MODE);
    assert.equal(again.code, 0, again.output);
    assert.equal(footers(again.output)[STEP], '= unchanged', again.output);
    assert.equal(t.github.writes().length, writes);
    assert.equal(t.github.hooks.size, 1, 'no duplicate webhook');

    const local = await t.launch(['--yes', '--only', STEP]);
    assert.equal(local.code, 0, local.output);
    assert.equal(t.github.hooks.size, 0);
    assert.equal(t.github.variables.has('CODEXK8S_STAGING_DOMAIN'), false);
    assert.deepEqual(t.github.problems, []);
  });

  it('CODEXK8S_GITHUB_REPO in another case is the same repository: unchanged, no second webhook, and still ours', async () => {
    const recased = { ...SERVER_MODE, CODEXK8S_GITHUB_REPO: 'Codex-K8s/E2E-Sandbox' };
    const first = await t.launch(['--yes', '--only', STEP], SERVER_MODE);
    assert.equal(first.code, 0, first.output);
    const writes = t.github.writes().length;
    const again = await t.launch(['--yes', '--only', STEP], recased);
    assert.equal(again.code, 0, again.output);
    assert.equal(footers(again.output)[STEP], '= unchanged', again.output);
    assert.equal(t.github.writes().length, writes, 'no write call');
    assert.equal(t.github.hooks.size, 1, 'no second webhook');
    const local = await t.launch(['--yes', '--only', STEP], { CODEXK8S_GITHUB_REPO: 'Codex-K8s/E2E-Sandbox' });
    assert.equal(local.code, 0, local.output);
    assert.equal(t.github.hooks.size, 0, 'the webhook this tool created is removed: no stale webhook');
    assert.deepEqual(t.github.problems, []);
  });

  it('a 403 on the webhook create: the error names the request and lists the variable writes made before it', async () => {
    t.github.fault('POST /repos/{owner}/{repo}/hooks', { kind: 'missing-permission' });
    const r = await t.launch(['--yes', '--only', STEP], SERVER_MODE);
    assert.equal(r.code, 1, r.output);
    assert.match(
      r.output,
      /POST \/repos\/codex-k8s\/e2e-sandbox\/hooks -> 403: GitHub answered 403 "Resource not accessible by personal access token"; the token needs Webhooks: Read and write/,
    );
    assert.match(r.output, /\| \+ created variable CODEXK8S_STAGING_DOMAIN="staging\.e2e\.example"/);
    const resumed = await t.launch(['--yes', '--only', STEP], SERVER_MODE);
    assert.equal(resumed.code, 0, resumed.output);
    assert.ok(!/created variable/.test(resumed.output), 'the variables written before the failure are kept');
    assert.equal(t.github.hooks.size, 1);
    const local = await t.launch(['--yes', '--only', STEP]);
    assert.equal(local.code, 0, local.output);
    assert.equal(t.github.hooks.size, 0);
    assert.deepEqual(t.github.problems, []);
  });

  it('--check by hand on the server reports converged; no secret value leaked anywhere', async () => {
    const r = await t.sb.ssh([`/opt/codex-k8s-bootstrap/bootstrap/remote/${STEP}.mts`, '--check'], { allowFail: true });
    assert.equal(r.exitCode, 0, r.stdout + r.stderr);
    const secret = await webhookSecretOnServer();
    const texts = await t.capturedTexts();
    for (const [where, text] of Object.entries(texts)) {
      assert.ok(!text.includes(t.secret), `the token appears in ${where}`);
      assert.ok(!text.includes(secret), `the webhook secret appears in ${where}`);
    }
  });
});
