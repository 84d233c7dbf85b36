#!/opt/codex-k8s-bootstrap/node/bin/node --
// 00_preflight: is this a server we can bootstrap? Changes nothing.
// Each check gives ok / warn / fail with a reason and, when not ok, a fix. Any fail stops the run here,
// before a single change; warnings are printed and the run goes on.
// Order: what the machine is (OS, root, arch, resources), then what it is busy with (cloud-init, apt locks,
// ports), then what it can reach (DNS of the domain, every host a later step downloads from).
import { runStep } from '../lib/step.mts';
import type { StepContext } from '../lib/step.mts';
import { OperationError } from '../lib/errors.mts';
import { operatorVerdictNow, refusal } from '../lib/harden/operator.mts';
import {
  evaluate,
  evaluateDns,
  evaluateOutbound,
  evaluatePorts,
  formatTable,
  gatherFacts,
  listeners,
  localAddresses,
  operatorCheck,
  outboundTargets,
  resolveAll,
  usernsPreflight,
  waitForAptLocks,
  waitForCloudInit,
} from '../lib/preflight.mts';
import type { Thresholds } from '../lib/preflight.mts';

function thresholds(ctx: StepContext): Thresholds {
  return {
    minMemoryMiB: ctx.cfg.get('CODEXK8S_MIN_MEMORY_MIB'),
    warnMemoryMiB: ctx.cfg.get('CODEXK8S_WARN_MEMORY_MIB'),
    minDiskGiB: ctx.cfg.get('CODEXK8S_MIN_DISK_GIB'),
  };
}

async function check(ctx: StepContext): Promise<string[]> {
  const cfg = ctx.cfg;
  const waitSeconds = cfg.get('CODEXK8S_PREFLIGHT_WAIT');
  const checks = evaluate(gatherFacts(), thresholds(ctx));
  const userns = usernsPreflight(cfg.maybe('CODEXK8S_BUILDKIT_USERNS'));
  checks.push(...userns.checks);
  const operator = await operatorVerdictNow(cfg);
  checks.push(operatorCheck(cfg.get('OPERATOR_USER'), operator));
  checks.push(await waitForCloudInit(waitSeconds));
  checks.push(await waitForAptLocks(waitSeconds, ctx.log));
  const held = await listeners();
  if (held) checks.push(...evaluatePorts(held));
  else
    checks.push({
      name: 'ports',
      status: 'warn',
      reason: 'ss failed; cannot tell whether 80, 443 and 6443 are free',
      fix: 'check with ss -ltnp; k3s needs them',
    });
  const domain = cfg.maybe('CODEXK8S_STAGING_DOMAIN');
  if (cfg.get('CODEXK8S_MODE') === 'server' && domain)
    checks.push(evaluateDns(domain, await resolveAll(domain), localAddresses()));
  const outbound = cfg.get('CODEXK8S_OUTBOUND_CHECK');
  if (outbound === 'skip')
    checks.push({ name: 'https', status: 'warn', reason: 'outbound probes skipped (CODEXK8S_OUTBOUND_CHECK=skip)' });
  else {
    const targets = outboundTargets({
      mode: cfg.get('CODEXK8S_MODE'),
      mirror: cfg.maybe('CODEXK8S_ARTIFACT_MIRROR'),
      overrides: cfg.maybe('CODEXK8S_ARTIFACT_SHA256_OVERRIDES'),
      githubApiUrl: cfg.get('CODEXK8S_GITHUB_API_URL'),
      arch: process.arch === 'arm64' ? 'arm64' : 'x64',
    });
    checks.push(...(await evaluateOutbound(targets, outbound === 'warn' ? 'warn' : 'fail')));
  }
  for (const line of formatTable(checks)) ctx.log.info(line);
  // After the table, so every other finding is printed too. Bad settings: exit 2.
  if (operator.kind === 'refused') throw refusal(operator);
  if (userns.refusal) throw userns.refusal;
  return checks
    .filter((c) => c.status === 'fail')
    .map((c) => `${c.name}: ${c.reason}${c.fix ? ` (fix: ${c.fix})` : ''}`);
}

async function apply(_ctx: StepContext, drift: readonly string[]): Promise<string[]> {
  // Preflight cannot fix the server; a failed check stops the run before anything changes.
  throw new OperationError(`preflight failed (${drift.length} check(s)); nothing was changed`, {
    hint: 'fix the checks marked fail above, then run again',
  });
}

if (import.meta.filename === process.argv[1]) await runStep('00_preflight', { check, apply });
