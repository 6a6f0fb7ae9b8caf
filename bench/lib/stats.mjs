// Small statistics helpers: summaries over repeated runs and a mergeable latency histogram.

/** Median, min and max (and the values) of repeated runs; undefined entries are dropped. */
export function summarize(values) {
  const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return { median: null, min: null, max: null, n: 0, values: [] };
  const mid = Math.floor(v.length / 2);
  const median = v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
  return { median, min: v[0], max: v[v.length - 1], n: v.length, values: values };
}

/**
 * A log-bucketed histogram of milliseconds: 1% relative precision from 1 µs to ~2 min,
 * small enough to send over IPC and merge across load-generator processes.
 */
const MIN_MS = 0.001;
const GROWTH = 1.01;
const LOG_GROWTH = Math.log(GROWTH);

export class Histogram {
  constructor() {
    this.counts = new Map();
    this.n = 0;
    this.max = 0;
    this.sum = 0;
  }

  record(ms) {
    const b = ms <= MIN_MS ? 0 : Math.floor(Math.log(ms / MIN_MS) / LOG_GROWTH) + 1;
    this.counts.set(b, (this.counts.get(b) ?? 0) + 1);
    this.n += 1;
    this.sum += ms;
    if (ms > this.max) this.max = ms;
  }

  merge(other) {
    const o = other instanceof Histogram ? other : Histogram.fromJSON(other);
    for (const [b, c] of o.counts) this.counts.set(b, (this.counts.get(b) ?? 0) + c);
    this.n += o.n;
    this.sum += o.sum;
    this.max = Math.max(this.max, o.max);
    return this;
  }

  /** The value at quantile q (0..1): the upper edge of the bucket holding it, capped at the max seen. */
  quantile(q) {
    if (this.n === 0) return null;
    const rank = Math.max(1, Math.ceil(q * this.n));
    let seen = 0;
    for (const b of [...this.counts.keys()].sort((x, y) => x - y)) {
      seen += this.counts.get(b);
      if (seen >= rank) return Math.min(b === 0 ? MIN_MS : MIN_MS * GROWTH ** b, this.max);
    }
    return this.max;
  }

  toJSON() {
    return { counts: [...this.counts], n: this.n, max: this.max, sum: this.sum };
  }

  static fromJSON(json) {
    const h = new Histogram();
    h.counts = new Map(json.counts);
    h.n = json.n;
    h.max = json.max;
    h.sum = json.sum;
    return h;
  }
}

export function ratio(a, b) {
  return typeof a === 'number' && typeof b === 'number' && b !== 0 ? a / b : null;
}
