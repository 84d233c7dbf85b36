// Loading the settings on the laptop: every problem at once, secrets prompted on a terminal, the operator key
// compared with its public half before anything is contacted.
import { loadConfig, SETTING_BY_NAME } from '../config.mts';
import type { Config, LoadResult } from '../config.mts';
import { Logger } from '../log.mts';
import { UsageError } from '../errors.mts';
import { run } from '../exec.mts';
import { canPrompt, readHidden } from '../prompt.mts';
import { registerSecret } from '../redact.mts';
import type { Options } from './context.mts';

/** Validation of everything, all problems at once; prompts for missing secrets on a terminal. */
export async function loadSettings(opts: Options, log: Logger): Promise<LoadResult> {
  const base = { envFile: opts.envFile, explicitEnvFile: opts.explicitEnvFile, side: 'host' as const };
  let loaded = loadConfig({ ...base, strict: !opts.dryRun });
  if (!opts.dryRun && loaded.missingSecrets.length > 0 && !opts.yes && canPrompt()) {
    const env: Record<string, string | undefined> = { ...process.env };
    for (const name of loaded.missingSecrets) {
      const s = SETTING_BY_NAME.get(name);
      const value = await readHidden(`${name} (${s?.description.split('.')[0] ?? 'secret'}): `);
      registerSecret(value);
      env[name] = value;
    }
    loaded = loadConfig({ ...base, strict: true, env });
  }
  if (!opts.dryRun) loaded.problems.push(...(await operatorKeyProblems(loaded.config, log)));
  for (const w of loaded.warnings) log.warn(w);
  if (loaded.problems.length > 0) {
    log.error(
      `${loaded.problems.length} problem(s) in the settings (from ${opts.envFile} and the environment); nothing was contacted:`,
    );
    throw new UsageError(loaded.problems);
  }
  return loaded;
}

/**
 * OPERATOR_SSH_KEY must be the private half of OPERATOR_SSH_PUBKEY (type and base64 compared, not the comment), or the
 * login check after hardening fails and rolls back. `-P ''` never prompts: an encrypted key cannot be compared here.
 */
export async function operatorKeyProblems(c: Config, log: Logger): Promise<string[]> {
  const key = c.maybe('OPERATOR_SSH_KEY');
  const pub = c.maybe('OPERATOR_SSH_PUBKEY');
  if (!key || !pub) return [];
  const r = await run(['ssh-keygen', '-y', '-P', '', '-f', key], { allowFail: true, log, timeoutSeconds: 15 });
  if (r.exitCode !== 0) {
    if (/passphrase/i.test(r.stderr)) {
      log.warn(
        `OPERATOR_SSH_KEY: ${key} is passphrase-protected, so it was not compared with OPERATOR_SSH_PUBKEY here; the login check uses your ssh-agent`,
      );
      return [];
    }
    return [
      `OPERATOR_SSH_KEY: ssh-keygen cannot read ${key} (${r.stderr.trim().split('\n').pop() ?? ''}); expected the operator's OpenSSH private key`,
    ];
  }
  const ident = (line: string) => line.trim().split(/\s+/).slice(0, 2).join(' ');
  if (ident(r.stdout) === ident(pub)) return [];
  return [
    `OPERATOR_SSH_KEY: ${key} is not the private key of OPERATOR_SSH_PUBKEY (${ident(pub).slice(0, 40)}...); expected the two settings to name one key pair`,
  ];
}
