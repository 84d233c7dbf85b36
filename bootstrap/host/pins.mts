#!/usr/bin/env -S node --import tsx --
// `npm run pins`: every pin of bootstrap/lib/versions.mts with its release date, age and source, oldest first.
// Offline on purpose: it reads only versions.mts, so it answers on a plane and in CI; to find newer releases,
// follow each source.
import { PINS } from '../lib/versions.mts';
import type { PinRow } from '../lib/versions.mts';
import { Logger } from '../lib/log.mts';
import { parseCli, helpText, runMain } from '../lib/cli.mts';
import type { CliSpec } from '../lib/cli.mts';
import { UsageError } from '../lib/errors.mts';

export const SPEC: CliSpec = {
  name: './bootstrap/host/pins.mts',
  usage: './bootstrap/host/pins.mts [--today YYYY-MM-DD]',
  summary:
    'Prints every pinned version of bootstrap/lib/versions.mts: name, version, release date, age in days, source. Changes nothing, contacts nothing.',
  flags: [
    { name: 'help', short: 'h', type: 'boolean', description: 'show this help and exit' },
    {
      name: 'today',
      type: 'string',
      value: 'YYYY-MM-DD',
      description: 'count ages as of this day (default: today, UTC)',
    },
  ],
  sections: [
    {
      title: 'Notes',
      body: 'A date marked * is not the upstream release date; the note under the table says what it is.\nTo bump a pin, follow the header comment of bootstrap/lib/versions.mts.',
    },
  ],
};

const DAY_MS = 86_400_000;

/** Whole days from `released` to `today` (both yyyy-mm-dd, UTC). */
export function ageDays(released: string, today: string): number {
  return Math.round((Date.parse(`${today}T00:00:00Z`) - Date.parse(`${released}T00:00:00Z`)) / DAY_MS);
}

/** The table, oldest pin first (the one most likely to need a bump on top), then by name. */
export function renderPins(pins: readonly PinRow[], today: string): string {
  const rows = [...pins].sort((a, b) => a.released.localeCompare(b.released) || a.name.localeCompare(b.name));
  const head = ['NAME', 'VERSION', 'RELEASED', 'AGE(d)', 'SOURCE'];
  const cells = rows.map((p) => [
    p.name,
    p.version,
    p.released + (p.dateNote ? '*' : ''),
    String(ageDays(p.released, today)),
    p.source,
  ]);
  const width = head.map((h, i) => Math.max(h.length, ...cells.map((c) => (c[i] as string).length)));
  const line = (c: string[]) => c.map((v, i) => (i === c.length - 1 ? v : v.padEnd(width[i] as number))).join('  ');
  const notes = rows.filter((p) => p.dateNote).map((p) => `* ${p.name}: ${p.dateNote}`);
  return (
    [
      `pins of bootstrap/lib/versions.mts, ages as of ${today}`,
      line(head),
      ...cells.map(line),
      ...(notes.length ? ['', ...notes] : []),
    ].join('\n') + '\n'
  );
}

/** A real calendar day written yyyy-mm-dd (2026-02-30 is not one). */
export function isIsoDate(v: string): boolean {
  const t = Date.parse(`${v}T00:00:00Z`);
  return /^\d{4}-\d{2}-\d{2}$/.test(v) && !Number.isNaN(t) && new Date(t).toISOString().slice(0, 10) === v;
}

function parseToday(v: string | undefined): string {
  if (v === undefined) return new Date().toISOString().slice(0, 10);
  if (!isIsoDate(v)) throw new UsageError(`--today ${v}: not a date; expected YYYY-MM-DD`);
  return v;
}

if (import.meta.filename === process.argv[1]) {
  const log = new Logger();
  await runMain(SPEC, log, async () => {
    const flags = parseCli(SPEC, process.argv.slice(2));
    if (flags['help']) {
      process.stdout.write(helpText(SPEC));
      return 0;
    }
    process.stdout.write(renderPins(PINS, parseToday(flags['today'] as string | undefined)));
    return 0;
  });
}
