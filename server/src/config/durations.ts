// Human durations for CLI flags: "90s", "30m", "24h", "7d", or plain seconds ("3600").
const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400 };

/** Whole seconds, or undefined when `text` is not a positive duration. */
export function parseDurationSeconds(text: string): number | undefined {
  const m = /^(\d{1,9})([smhd]?)$/.exec(text.trim());
  if (!m) return undefined;
  const seconds = Number(m[1]) * UNIT_SECONDS[m[2] || 's']!;
  return seconds > 0 && Number.isSafeInteger(seconds) ? seconds : undefined;
}
