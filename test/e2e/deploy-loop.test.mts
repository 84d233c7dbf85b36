// 80_deploy_loop_check end to end: the real launcher runs step 80 on a sandbox server, which dispatches
// staging-deploy.yml through the fake GitHub API (test/fakes/github: dispatch, runs, jobs; the run's outcome is a
// knob), waits for the run, then runs the smoke checks from the server against "staging": the real app
// (app/src/server.mts on Node 24, a real PostgreSQL) started on this host and reached from the sandbox at the host
// address through CODEXK8S_SMOKE_URL (test/e2e/staging.mts, which also plays the deploy: a green run leaves the app
// serving the run's commit, a red one leaves it as it was; test/unit/staging-deploy.test.mts executes the workflow
// itself). The runner check is the runner health 60_runner_arc waits for, so the cluster side is real: 00, 20, 30
// and 60 (plus 70, which generates the webhook secret the app and the smoke checks share) run first through the
// launcher, against the doubles; 10, 40 and 50 are out of scope here and journaled as done.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { startTarget, footers } from './harness.mts';
import type { Target } from './harness.mts';
import { startStaging } from './staging.mts';
import type { Staging } from './staging.mts';
import { stepNames } from '../../bootstrap/lib/catalogue.mts';
import { accountCommands } from '../../bootstrap/lib/harden/operator.mts';

const STEP = '80_deploy_loop_check';
const SETUP = ['00_preflight', '20_install_k3s', '30_cluster_deps', '60_runner_arc', '70_github_repo'];
const SET = 'codex-k8s-staging';
const sha = () => randomBytes(20).toString('hex');

let t: Target;
let staging: Staging;

async function serverJournal(): Promise<{
  steps: Record<string, { status: string; configHash: string; startedAt: string; runId: string }>;
  deployLoop?: { headSha: string; runUrl: string };
}> {
  return JSON.parse((await t.sb.exec(['cat', '/var/lib/codex-k8s-bootstrap/state.json'])).stdout) as never;
}

const dispatches = () => t.github.calls.filter((c) => c.method === 'POST' && c.route.endsWith('/dispatches'));
const runUrl = (id: number | undefined) => `${t.github.url}/codex-k8s/e2e-sandbox/actions/runs/${id}`;
const check = () => t.sb.ssh([`/opt/codex-k8s-bootstrap/bootstrap/remote/${STEP}.mts`, '--check'], { allowFail: true });

describe(
  '80_deploy_loop_check against a sandbox server, the fake GitHub API and the app on this host',
  { concurrency: false },
  () => {
    before(async () => {
      t = await startTarget();
      staging = await startStaging(t);
      // 10_harden_host is skipped: the operator user it would create is what 20 hands the kubeconfig to.
      await t.sb.exec(accountCommands.create('codex'));
      // The steps this test leaves out are prerequisites of the ones it runs: journaled as done.
      await t.journalAsDone(
        stepNames()
          .slice(0, stepNames().indexOf(STEP))
          .filter((n) => !SETUP.includes(n)),
      );
      const stop = t.playArcRunner(SET, 'arc-runners');
      const setup = await t.launch(['--yes', '--only', SETUP.join(',')]).finally(stop);
      assert.equal(setup.code, 0, setup.output);
    });
    after(async () => {
      await staging?.stop();
      await t?.stop();
    });

    it('green: dispatches the workflow on main, waits, prints the run, then the smoke checks from the server pass', async () => {
      const head = t.github.actions.headSha;
      t.github.actions.nextRun = {
        conclusion: 'success',
        jobs: [
          { name: 'build', seconds: 83, conclusion: 'success' },
          { name: 'deploy', seconds: 24, conclusion: 'success' },
          { name: 'smoke', seconds: 11, conclusion: 'success' },
        ],
      };
      const deliveries = staging.deliveries();
      const r = await t.launch(['--yes', '--only', STEP]);
      assert.equal(r.code, 0, r.output);
      assert.match(footers(r.output)[STEP] ?? '', /^\+ changed 3$/, r.output);
      const run = t.github.actions.runs.at(-1);
      assert.equal(run?.event, 'workflow_dispatch');
      assert.equal(run?.headBranch, 'main');
      assert.equal(run?.headSha, head);
      assert.equal(dispatches().length, 1);
      assert.ok(
        r.output.includes(
          `dispatched staging-deploy.yml on main: run #${run?.runNumber} ${runUrl(run?.id)} (commit ${head.slice(0, 12)})`,
        ),
        r.output,
      );
      assert.match(r.output, /build\s+success\s+1m23s/);
      assert.match(r.output, /deploy\s+success\s+24s/);
      assert.ok(
        r.output.includes(
          `smoke checks from the server against ${staging.url}, expecting version ${head.slice(0, 12)}`,
        ),
        r.output,
      );
      for (const name of ['healthz', 'readyz', 'version', 'webhook-unsigned', 'webhook-signed', 'runner'])
        assert.match(r.output, new RegExp(`✓ ${name}\\b`), `${name} did not pass:\n${r.output}`);
      assert.match(
        r.output,
        /✓ runner .*scale set codex-k8s-staging registered in GitHub, listener Ready, a runner online/,
      );
      // Real effects: the signed test delivery reached the app's database from the server; the journal holds the proof.
      assert.ok(staging.deliveries() > deliveries);
      assert.match(staging.secret(), /^[0-9a-f]{64}$/, "signed with the server's webhook secret");
      const j = await serverJournal();
      assert.equal(j.deployLoop?.headSha, head);
      assert.equal(j.deployLoop?.runUrl, runUrl(run?.id));
      assert.deepEqual(t.github.problems, []);
    });

    it('a second run is unchanged: nothing dispatched; --check on the server finds no drift', async () => {
      const before = dispatches().length;
      const r = await t.launch(['--yes', '--only', STEP]);
      assert.equal(r.code, 0, r.output);
      assert.equal(footers(r.output)[STEP], '= unchanged', r.output);
      assert.equal(dispatches().length, before);
      const c = await check();
      assert.equal(c.exitCode, 0, c.stdout + c.stderr);
    });

    it('staging rolled back by hand (another version live) is drift; a run brings the proven commit back', async () => {
      const proven = t.github.actions.headSha;
      await staging.serve(sha());
      const c = await check();
      assert.equal(c.exitCode, 1, c.stdout + c.stderr);
      assert.match(c.stdout + c.stderr, new RegExp(`staging serves version [0-9a-f]{40}, not ${proven.slice(0, 12)}`));
      const r = await t.launch(['--yes', '--only', STEP]);
      assert.equal(r.code, 0, r.output);
      assert.equal(staging.version(), proven);
    });

    it('a push to main is drift; the run that follows proves the new commit', async () => {
      const pushed = sha();
      t.github.actions.push(pushed, { conclusion: 'success' });
      await staging.settled(); // the push run deployed it
      const c = await check();
      assert.equal(c.exitCode, 1, c.stdout + c.stderr);
      assert.match(c.stdout + c.stderr, new RegExp(`the deploy loop has not been proven for ${pushed.slice(0, 12)}`));
      const r = await t.launch(['--yes', '--only', STEP]);
      assert.equal(r.code, 0, r.output);
      assert.match(footers(r.output)[STEP] ?? '', /^\+ changed 3$/);
      assert.equal((await serverJournal()).deployLoop?.headSha, pushed);
    });

    it('red: a failed run fails the step with the run URL; no smoke checks; the journal keeps the last proof', async () => {
      const proven = (await serverJournal()).deployLoop?.headSha;
      t.github.actions.push(sha(), { conclusion: 'success' }); // a new commit: the loop must run again
      await staging.settled();
      t.github.actions.nextRun = { conclusion: 'failure' };
      const r = await t.launch(['--yes', '--only', STEP]);
      assert.equal(r.code, 1, r.output);
      assert.equal(footers(r.output)[STEP], 'x failed', r.output);
      const run = t.github.actions.runs.at(-1);
      assert.equal(run?.event, 'workflow_dispatch');
      assert.ok(r.output.includes(`concluded failure (smoke: failure): ${runUrl(run?.id)}`), r.output);
      assert.match(r.output, /smoke\s+failure\s+12s/);
      assert.doesNotMatch(r.output, /smoke checks from the server/, 'no smoke checks after a red run');
      assert.equal((await serverJournal()).deployLoop?.headSha, proven);
    });

    it('no secret value anywhere: not the token, not the webhook secret', async () => {
      const texts = await t.capturedTexts();
      assert.ok(staging.secret().length > 0);
      for (const [where, text] of Object.entries(texts)) {
        assert.ok(!text.includes(t.secret), `the token appears in ${where}`);
        assert.ok(!text.includes(staging.secret()), `the webhook secret appears in ${where}`);
      }
      assert.ok(!staging.logs().includes(staging.secret()), 'the app does not log it either');
    });
  },
);
