// Compile-time proof (npm run typecheck): settings are typed by the schema. Each @ts-expect-error must find its
// error, or tsc fails with "Unused '@ts-expect-error' directive".
import type { Config, SettingValue } from '../../bootstrap/lib/config.mts';

export function typedSettings(cfg: Config): void {
  const port: number = cfg.get('CODEXK8S_SSH_PORT');
  const mode: 'local' | 'server' = cfg.get('CODEXK8S_MODE');
  const adopt: boolean = cfg.get('OPERATOR_ADOPT_EXISTING');
  const extra: readonly string[] | undefined = cfg.maybe('CODEXK8S_SSH_EXTRA_OPTS');
  // @ts-expect-error a misspelt setting name does not compile
  cfg.get('CODEXK8S_SSH_PROT');
  // @ts-expect-error a port is a number, not a string
  const asText: string = cfg.get('CODEXK8S_SSH_PORT');
  // @ts-expect-error an enum is the union of its values
  const other: SettingValue<'CODEXK8S_MODE'> = 'prod';
  void [port, mode, adopt, extra, asText, other];
}
