// A rollout strategy: cumulative waves and a failure tolerance.
//   { "waves": [{ "percent": 10, "approval": "auto" }, { "percent": 100, "approval": "manual" }],
//     "max_failure_rate": 0.05 }
// Percentages are cumulative, strictly increasing, and the last is 100. No strategy means
// one automatic wave of 100%. max_failure_rate is in [0, 1) and defaults to 0: the first
// failure halts.
import { compileSchema, type JsonSchema } from '@meshanics/core/contract';

export type Approval = 'auto' | 'manual';

export interface Wave {
  percent: number;
  approval: Approval;
}

export interface Strategy {
  waves: Wave[];
  max_failure_rate: number;
}

export const STRATEGY_SCHEMA: JsonSchema = Object.freeze({
  type: 'object',
  additionalProperties: false,
  properties: {
    waves: {
      type: 'array',
      minItems: 1,
      maxItems: 20,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['percent'],
        properties: {
          percent: { type: 'number', exclusiveMinimum: 0, maximum: 100 },
          approval: { enum: ['auto', 'manual'] },
        },
      },
    },
    max_failure_rate: { type: 'number', minimum: 0, exclusiveMaximum: 1 },
  },
});

const validateShape = compileSchema<Partial<{ waves: Array<Partial<Wave>>; max_failure_rate: number }>>(STRATEGY_SCHEMA, 'strategy');

export const DEFAULT_STRATEGY: Strategy = Object.freeze({
  waves: [Object.freeze({ percent: 100, approval: 'auto' as const })],
  max_failure_rate: 0,
});

/** Validates and normalizes a strategy; errors say the path and the rule. */
export function parseStrategy(input: unknown): { ok: true; strategy: Strategy } | { ok: false; errors: string[] } {
  if (input === undefined || input === null) return { ok: true, strategy: structuredClone(DEFAULT_STRATEGY) };
  const shape = validateShape(input);
  if (!shape.ok) return shape;
  const waves = (shape.value.waves ?? [{ percent: 100 }]).map((w) => ({ percent: w.percent!, approval: w.approval ?? 'auto' }));
  const errors: string[] = [];
  waves.forEach((w, i) => {
    if (i > 0 && w.percent <= waves[i - 1]!.percent) {
      errors.push(`strategy/waves/${i}/percent must be greater than the previous wave's ${waves[i - 1]!.percent} (percentages are cumulative)`);
    }
  });
  if (waves.at(-1)!.percent !== 100) errors.push(`strategy/waves/${waves.length - 1}/percent must be 100 (the last wave covers every device)`);
  if (errors.length > 0) return { ok: false, errors };
  return { ok: true, strategy: { waves, max_failure_rate: shape.value.max_failure_rate ?? 0 } };
}

/**
 * How many devices the first k waves hold together, for n devices: ceil of the cumulative
 * share, so a small fleet still gets a non-empty first wave.
 */
export function cumulativeCounts(strategy: Strategy, n: number): number[] {
  return strategy.waves.map((w) => Math.min(n, Math.ceil((n * w.percent) / 100)));
}
