// The launcher's command line: flags, help text and examples (lib/cli.mts prints and parses it).
import type { CliSpec } from '../cli.mts';
import { EXIT_LOCKED } from '../errors.mts';
import { STEPS } from '../catalogue.mts';
import { REMOTE } from '../paths.mts';
import { NODE } from '../versions.mts';
import { NAME_WIDTH, SELF } from './context.mts';

export const SPEC: CliSpec = {
  name: SELF,
  usage: `${SELF} [--env-file PATH] [--dry-run | --check [--json] | --status [--json] | --list | --backup DIR | --uninstall [--purge-data] [--remove-operator] [--confirm-host NAME]] [--restore-from FILE|github:latest|github:RUN_ID [--restore-overwrite]] [--from STEP | --only STEP[,STEP]] [--yes] [--verbose]`,
  summary:
    'Bootstraps a fresh Ubuntu 24.04 server into the codex-k8s staging environment over SSH.\n' +
    'Validates every setting first (nothing is contacted when one is wrong), then runs the remote steps in order.\n' +
    'Safe to re-run: every step checks before it changes and reports "unchanged" when there is nothing to do.',
  flags: [
    { name: 'help', short: 'h', type: 'boolean', description: 'show this help and exit' },
    {
      name: 'env-file',
      type: 'string',
      value: 'PATH',
      description: 'settings file (dotenv; default .env). Variables already in the environment win',
    },
    {
      name: 'dry-run',
      type: 'boolean',
      description:
        'validate and print the plan (each step, what it checks and changes); contact nothing, no secrets needed',
    },
    {
      name: 'check',
      type: 'boolean',
      description:
        "connect and run every selected step's check: a live plan of the drift, nothing changed on the server (exit 0 converged, 1 drift)",
    },
    {
      name: 'status',
      type: 'boolean',
      description:
        'one screen of how staging is doing: nodes, k3s, charts and images against their pins, PostgreSQL and its last backup, runners, the last deploy, TLS days left, disk and memory, the last run; each line that needs action names the command or runbook section. Reads only, takes no lock (exit 0 healthy, 1 when a line is a failure)',
    },
    {
      name: 'json',
      type: 'boolean',
      description: 'with --check or --status: the report as JSON on stdout (the rest on stderr)',
    },
    { name: 'list', type: 'boolean', description: 'list the steps in order and exit' },
    {
      name: 'backup',
      type: 'string',
      value: 'DIR',
      description:
        'write an encrypted backup bundle of staging into DIR on this laptop (database dump, generated secrets, journal, pins, manifest; age, to CODEXK8S_BACKUP_AGE_RECIPIENT or a passphrase) and exit; changes nothing on the server',
    },
    {
      name: 'restore-from',
      type: 'string',
      value: 'FILE|github:latest|github:RUN_ID',
      description:
        "run the steps onto a fresh server with the data and secrets of a bundle written by --backup, or of the nightly staging-backup workflow (its newest artifact, or that run's, downloaded with CODEXK8S_GITHUB_PAT): checked whole before anything is contacted; 40_postgres restores it",
    },
    {
      name: 'restore-overwrite',
      type: 'boolean',
      description: 'with --restore-from: replace a database that already holds rows (refused without it)',
    },
    {
      name: 'from',
      type: 'string',
      value: 'STEP',
      description:
        'start at STEP (name, number or words: 10_harden_host, 10, harden_host); earlier steps must have succeeded',
    },
    {
      name: 'only',
      type: 'string',
      value: 'STEP[,STEP]',
      description: 'run just these steps; every step before each of them that is not named must have succeeded',
    },
    {
      name: 'uninstall',
      type: 'boolean',
      description:
        "take staging down: prints everything it will remove (every step's teardown, last step first: GitHub's variables, secrets and webhook that this tool created, ARC, the service, k3s through its own uninstall script, the firewall, fail2ban jail, sysctl files and the sshd drop-in, then the tool's own directories), asks for the host name to be typed, removes it, and proves a new login still works. Keeps a final PostgreSQL dump and the operator unless told",
    },
    {
      name: 'confirm-host',
      type: 'string',
      value: 'NAME',
      description: 'with --uninstall --yes: the confirmation without a prompt; must equal TARGET_HOST',
    },
    {
      name: 'purge-data',
      type: 'boolean',
      description: 'with --uninstall: no final PostgreSQL dump is kept, and earlier kept dumps go too',
    },
    {
      name: 'remove-operator',
      type: 'boolean',
      description: 'with --uninstall: the operator account (one this tool created), its home and its sudo go too',
    },
    { name: 'yes', short: 'y', type: 'boolean', description: 'never prompt: a missing secret is an error' },
    { name: 'verbose', short: 'v', type: 'boolean', description: 'print every command, locally and on the server' },
  ],
  sections: [
    { title: 'Steps', body: STEPS.map((s) => `${s.name.padEnd(NAME_WIDTH)} ${s.title}`).join('\n') },
    {
      title: 'What it changes on the server',
      body:
        `${REMOTE.node}            pinned Node.js ${NODE.version} (sha256-verified)\n` +
        `${REMOTE.base}/{bootstrap,manifests,app,node_modules}  this tree (app/: the service's sources, no tests)\n` +
        `${REMOTE.sourceFile}  {"gitSha"}: the commit app/ is (step 50 tags the first image with it)\n` +
        `${REMOTE.envFile}   the settings (0600)\n` +
        `${REMOTE.journal}   per-step journal\n` +
        `${REMOTE.logDir}/      logs, one file per run\n` +
        'and whatever each step says under "Changes" (--dry-run prints them).',
    },
    {
      title: 'On the laptop',
      body: 'CODEXK8S_HOST_STATE_DIR/known_hosts/<host>_<port>  the pinned SSH host key of each server\nCODEXK8S_HOST_LOG_DIR/<run-id>.log                 the log of each run (secrets masked)\nDIR/codex-k8s-staging-<host>-<time>.age          --backup: the encrypted bundle (0600)',
    },
    {
      title: 'Environment',
      body: 'Every setting in .env.example (see docs/configuration.md). NO_COLOR=1 disables colours.',
    },
    {
      title: 'Exit codes',
      body: `0 done (--check: converged)\n1 a step, the connection or an upload failed (the message says how to resume); --check: drift\n2 bad flag or setting; nothing was contacted\n${EXIT_LOCKED} another run holds the server lock`,
    },
    {
      title: 'Examples',
      body:
        `${SELF} --dry-run --env-file .env.example   # the plan, without a server\n` +
        `${SELF}                                      # full run with .env\n` +
        `${SELF} --check                              # what a run would change now (changes nothing)\n` +
        `${SELF} --from 10_harden_host                # resume after a failure\n` +
        `${SELF} --only 00_preflight --yes            # one step, no prompts\n` +
        `${SELF} --backup ~/backups                   # an encrypted bundle of staging's data and secrets\n` +
        `${SELF} --restore-from ~/backups/F.age       # a new server, with the data and secrets of that bundle\n` +
        `${SELF} --restore-from github:latest         # the same from the newest nightly backup artifact\n` +
        `${SELF} --uninstall                          # the teardown plan, then remove it after the host name is typed`,
    },
  ],
};
