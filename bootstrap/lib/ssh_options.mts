// CODEXK8S_SSH_EXTRA_OPTS: a short allowlist of ssh options, read the way ssh reads its argv, so that nothing a user
// adds can change who we connect to, how the host key is checked, or the shared connection the launcher manages.
//
// The words (split on whitespace) are parsed like OpenSSH's getopt in ssh.c (9.x: flags "1246ACGKMNTVXYZafgknqstvxy",
// with a value "B:D:E:F:I:J:L:O:P:Q:R:S:W:b:c:e:i:l:m:o:p:w:"): flags may be grouped (-4C), a value follows in the
// same word (-Jhost, -oKey=Value) or the next one (-J host, -o Key=Value). An -o argument is split like readconf.c's
// strdelim: the keyword (case-insensitive), then one '='. `-o Key Value` (three words) is read as `-o Key=Value`;
// ssh itself would take Value as the destination, so it is never passed on like that: what passes is re-emitted as
// `-o Keyword=value` with the keyword spelled canonically.
import { isIPv4, isIPv6 } from 'node:net';

type Check = (value: string) => string | undefined;

const HOST_LABEL = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;
const JUMP_USER = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,31}$/;
const ALGORITHMS = /^[+^-]?[A-Za-z0-9@._-]+(,[A-Za-z0-9@._-]+)*$/;
// readconf.c parse_time (convtime): a number with an optional unit, or several (1m30s).
const TIME = /^(\d{1,6}[smhdwSMHDW]?)+$/;
const IPQOS = /^(af[1-4][1-3]|cs[0-7]|ef|le|va|none|lowdelay|throughput|reliability|\d{1,3})$/i;

function jumpHost(h: string): boolean {
  if (h.startsWith('[') && h.endsWith(']')) return isIPv6(h.slice(1, -1));
  if (isIPv4(h)) return true;
  const labels = h.split('.');
  return h.length <= 253 && labels.every((l) => HOST_LABEL.test(l)) && /[A-Za-z]/.test(labels[labels.length - 1] ?? '');
}

/** A jump host (bastion) the launcher connects through, its host key pinned like the server's (CODEXK8S_SSH_JUMP). */
export interface JumpHost {
  /** Absent: ssh's own choice (~/.ssh/config's User for that host, else the local user name). */
  user?: string;
  /** As ssh takes it: a name or an address, an IPv6 address without brackets. */
  host: string;
  port: number;
}

export type JumpParsed = { ok: true; value: JumpHost } | { ok: false; why: string; expected: string };

const JUMP_EXPECTED = 'one jump host, [user@]host[:port] (an IPv6 address in brackets: [2001:db8::1]:22)';

/** [ssh://][user@]host[:port], one hop (readconf.c parse_jump reads the same syntax; a chain is not supported). */
export function parseJumpHost(value: string): JumpParsed {
  const shown = JSON.stringify(value);
  if (value.includes(','))
    return {
      ok: false,
      why: `${shown} is a chain of jump hosts`,
      expected: `${JUMP_EXPECTED}; a chain is not supported`,
    };
  const m = /^(?:ssh:\/\/)?(?:([^@]*)@)?(\[[^\]]*\]|[^:@[\]]*)(?::(\d{1,5}))?$/.exec(value);
  const port = m?.[3] === undefined ? 22 : Number(m[3]);
  if (!m || (m[1] !== undefined && !JUMP_USER.test(m[1])) || !jumpHost(m[2] ?? '') || port < 1 || port > 65535)
    return { ok: false, why: `${shown} is not [user@]host[:port]`, expected: JUMP_EXPECTED };
  const host = (m[2] as string).replace(/^\[(.*)\]$/, '$1');
  return { ok: true, value: { ...(m[1] !== undefined ? { user: m[1] } : {}), host, port } };
}

/** The jump host as a human writes it (and as `ssh -J` takes it). */
export function formatJumpHost(j: JumpHost): string {
  return `${j.user ? `${j.user}@` : ''}${j.host.includes(':') ? `[${j.host}]` : j.host}:${j.port}`;
}

const pattern =
  (re: RegExp, what: string): Check =>
  (v) =>
    re.test(v) ? undefined : `${JSON.stringify(v)} is not ${what}`;
const oneOf = (...words: string[]): Check => pattern(new RegExp(`^(${words.join('|')})$`, 'i'), words.join(', '));

/** The options known to be safe: how to reach the server and how fast to give up, nothing about whom we trust. */
const ALLOWED: ReadonlyMap<string, { name: string; check: Check }> = new Map(
  (
    [
      ['Ciphers', pattern(ALGORITHMS, 'a cipher list')],
      ['MACs', pattern(ALGORITHMS, 'a MAC list')],
      ['KexAlgorithms', pattern(ALGORITHMS, 'a key exchange algorithm list')],
      ['ConnectTimeout', pattern(TIME, 'a time such as 30 or 1m')],
      ['ConnectionAttempts', pattern(/^\d{1,4}$/, 'a number')],
      ['ServerAliveInterval', pattern(TIME, 'a time such as 15 or 1m')],
      ['ServerAliveCountMax', pattern(/^\d{1,4}$/, 'a number')],
      ['TCPKeepAlive', oneOf('yes', 'no')],
      ['Compression', oneOf('yes', 'no')],
      ['AddressFamily', oneOf('any', 'inet', 'inet6')],
      ['IPQoS', pattern(IPQOS, 'one IPQoS value such as af21, cs1, ef or lowdelay')],
    ] as Array<[string, Check]>
  ).map(([name, check]) => [name.toLowerCase(), { name, check }]),
);

// Why a known-dangerous option is refused, by ssh_config keyword (lower case).
const HOST_KEY = 'it would change how the host key is checked; the launcher pins it per server';
const WHO =
  'it would change where or as whom ssh logs in, or how it authenticates; the launcher sets that from TARGET_*';
const CONTROL = 'it would change the shared connection the launcher manages';
const COMMAND = 'it would run a command of its own';
const JUMP =
  'a jump host given here would be checked against ~/.ssh/known_hosts, not pinned; set CODEXK8S_SSH_JUMP=[user@]host[:port] instead';
const FORWARD = 'it would forward connections, the agent or the environment, or change the session';
const REFUSED: ReadonlyMap<string, string> = new Map(
  [
    ...[
      'StrictHostKeyChecking',
      'UserKnownHostsFile',
      'GlobalKnownHostsFile',
      'KnownHostsCommand',
      'HostKeyAlias',
      'HostKeyAlgorithms',
      'CheckHostIP',
      'VerifyHostKeyDNS',
      'UpdateHostKeys',
      'HashKnownHosts',
      'RevokedHostKeys',
      'CASignatureAlgorithms',
      'NoHostAuthenticationForLocalhost',
      'StrictModes',
    ].map((k) => [k, HOST_KEY] as const),
    ...[
      'Hostname',
      'Host',
      'Match',
      'Include',
      'User',
      'Port',
      'IdentityFile',
      'IdentitiesOnly',
      'IdentityAgent',
      'CertificateFile',
      'PKCS11Provider',
      'SecurityKeyProvider',
      'AddKeysToAgent',
      'BatchMode',
      'PreferredAuthentications',
      'PubkeyAuthentication',
      'PubkeyAcceptedAlgorithms',
      'PasswordAuthentication',
      'KbdInteractiveAuthentication',
      'HostbasedAuthentication',
      'CanonicalizeHostname',
      'CanonicalDomains',
      'BindAddress',
      'BindInterface',
      'Tag',
    ].map((k) => [k, WHO] as const),
    ...['ControlPath', 'ControlMaster', 'ControlPersist'].map((k) => [k, CONTROL] as const),
    ['ProxyJump', JUMP] as const,
    ...['ProxyCommand', 'LocalCommand', 'PermitLocalCommand', 'RemoteCommand', 'ProxyUseFdpass'].map(
      (k) => [k, COMMAND] as const,
    ),
    ...[
      'LocalForward',
      'RemoteForward',
      'DynamicForward',
      'ForwardAgent',
      'ForwardX11',
      'ForwardX11Trusted',
      'Tunnel',
      'TunnelDevice',
      'GatewayPorts',
      'ClearAllForwardings',
      'ExitOnForwardFailure',
      'PermitRemoteOpen',
      'SessionType',
      'RequestTTY',
      'StdinNull',
      'ForkAfterAuthentication',
      'SendEnv',
      'SetEnv',
      'EscapeChar',
      'LogLevel',
    ].map((k) => [k, FORWARD] as const),
  ].map(([k, why]) => [k.toLowerCase(), why]),
);

// Short flags that are shorthands for an allowed option: the flag, the keyword, a fixed value when it takes none.
const FLAG_ALIASES: Readonly<Record<string, { keyword: string; value?: string }>> = {
  c: { keyword: 'Ciphers' },
  m: { keyword: 'MACs' },
  '4': { keyword: 'AddressFamily', value: 'inet' },
  '6': { keyword: 'AddressFamily', value: 'inet6' },
  C: { keyword: 'Compression', value: 'yes' },
};
const FLAG_REASONS: Readonly<Record<string, string>> = {
  J: JUMP,
  p: 'the port is TARGET_PORT',
  l: 'the user is TARGET_ROOT_USER',
  i: 'the keys are TARGET_ROOT_SSH_KEY and OPERATOR_SSH_KEY',
  F: 'another configuration file could change how the host key is checked',
  S: CONTROL,
  M: CONTROL,
  O: CONTROL,
  G: 'ssh would print its configuration and exit instead of connecting',
  V: 'ssh would print its version and exit',
  Q: 'ssh would print a list and exit',
  W: FORWARD,
  L: FORWARD,
  R: FORWARD,
  D: FORWARD,
  A: FORWARD,
  X: FORWARD,
  Y: FORWARD,
  w: FORWARD,
  N: FORWARD,
  f: FORWARD,
  n: FORWARD,
  s: FORWARD,
  t: FORWARD,
  T: FORWARD,
  E: "the launcher reads ssh's own messages",
  q: "the launcher reads ssh's own messages",
  v: "the launcher reads ssh's own messages",
  y: "the launcher reads ssh's own messages",
};
// OpenSSH ssh.c getopt string (9.x): flags without and with a value.
const SSH_FLAGS = '1246ACGKMNTVXYZafgknqstvxy';
const SSH_FLAGS_WITH_VALUE = 'BDEFIJLOPQRSWbceilmopw';

export const ALLOWED_SSH_OPTIONS = `-o with ${[...ALLOWED.values()].map((a) => a.name).join(', ')}; or -c (Ciphers), -m (MACs), -4, -6, -C`;

export type SshOptionsParsed = { ok: true; value: string[] } | { ok: false; why: string; expected: string };

/** Parses CODEXK8S_SSH_EXTRA_OPTS into `-o Keyword=value` pairs, or says which option is refused and why. */
export function parseSshExtraOptions(raw: string): SshOptionsParsed {
  const words = raw.split(/\s+/).filter(Boolean);
  const out: string[] = [];
  const seen = new Set<string>();
  const fail = (why: string): SshOptionsParsed => ({
    ok: false,
    why,
    expected: `only these options: ${ALLOWED_SSH_OPTIONS}`,
  });
  const add = (keyword: string, value: string | undefined, shown: string): SshOptionsParsed | undefined => {
    const allowed = ALLOWED.get(keyword.toLowerCase());
    if (!allowed) {
      const refused = REFUSED.get(keyword.toLowerCase());
      if (!/^[A-Za-z0-9]+$/.test(keyword)) return fail(`${JSON.stringify(shown)} is not an ssh option`);
      return fail(
        `option ${keyword} is not allowed (${refused ?? 'it is not on the list of options known to be safe'})`,
      );
    }
    if (value === undefined || value === '') return fail(`option ${allowed.name} has no value`);
    const bad = allowed.check(value);
    if (bad) return fail(`option ${allowed.name}: ${bad}`);
    if (seen.has(allowed.name)) return fail(`option ${allowed.name} is given twice; ssh would use only the first`);
    seen.add(allowed.name);
    out.push('-o', `${allowed.name}=${value}`);
    return undefined;
  };
  for (let i = 0; i < words.length; i++) {
    const word = words[i] as string;
    if (word === '--') return fail('"--" ends ssh\'s options: the next word would become the destination');
    if (!word.startsWith('-') || word === '-')
      return fail(
        `${JSON.stringify(word)} is not an option: ssh would take it as the destination (set CODEXK8S_SSH_JUMP=${word} to jump through it)`,
      );
    for (let j = 1; j < word.length; j++) {
      const flag = word[j] as string;
      const alias = FLAG_ALIASES[flag];
      if (!SSH_FLAGS.includes(flag) && !SSH_FLAGS_WITH_VALUE.includes(flag))
        return fail(`-${flag} (in ${JSON.stringify(word)}) is not an ssh option`);
      if (SSH_FLAGS.includes(flag)) {
        if (!alias)
          return fail(
            `option -${flag} is not allowed (${FLAG_REASONS[flag] ?? 'it is not on the list of options known to be safe'})`,
          );
        const r = add(alias.keyword, alias.value, `-${flag}`);
        if (r) return r;
        continue;
      }
      // A flag with a value takes the rest of the word, or else the next word whatever it is (as getopt does).
      let value: string | undefined = word.slice(j + 1);
      if (value === '') value = words[++i];
      if (flag !== 'o' && !alias)
        return fail(
          `option -${flag} is not allowed (${FLAG_REASONS[flag] ?? 'it is not on the list of options known to be safe'})`,
        );
      if (value === undefined) return fail(`option -${flag} has no value`);
      if (alias) {
        const r = add(alias.keyword, value, `-${flag}`);
        if (r) return r;
        break;
      }
      const eq = value.indexOf('=');
      const keyword = eq < 0 ? value : value.slice(0, eq);
      let optionValue = eq < 0 ? undefined : value.slice(eq + 1);
      // `-o Key Value`: the value is the next word unless that is the next option.
      if (
        optionValue === undefined &&
        ALLOWED.has(keyword.toLowerCase()) &&
        words[i + 1] !== undefined &&
        !words[i + 1]?.startsWith('-')
      )
        optionValue = words[++i];
      const r = add(keyword, optionValue, value);
      if (r) return r;
      break;
    }
  }
  return { ok: true, value: out };
}
