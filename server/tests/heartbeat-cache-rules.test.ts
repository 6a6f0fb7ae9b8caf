// The cache's own rules, with a stand-in feed whose caughtUp() the test sets (the real feeds
// are tested against real databases in device-state-feed.test.ts, and the whole through gRPC
// in heartbeat-cache.test.ts): when an answer may be kept, used, and must be dropped.
import { describe, expect, it } from 'vitest';
import { HeartbeatCache, type HeartbeatView } from '../src/heartbeat-cache.js';

const view = (deviceId: string, digest = 'd0'): HeartbeatView => ({
  deviceId,
  installedDigest: digest,
  assignments: [],
  logRequests: [],
  nextHeartbeatSeconds: 30,
});

function setup(options: ConstructorParameters<typeof HeartbeatCache>[0] = {}) {
  const feed = { ok: true, caughtUp() { return this.ok; }, close: async () => undefined };
  const cache = new HeartbeatCache(options);
  cache.follow(feed);
  return { cache, feed };
}

describe('heartbeat cache rules', () => {
  it('keeps an answer read while nothing changed and hands it out until its device changes', () => {
    const { cache } = setup();
    const { ticket } = cache.lookup('spiffe://a');
    cache.store(ticket, 'spiffe://a', view('dev-a'));
    expect(cache.lookup('spiffe://a').view).toEqual(view('dev-a'));
    cache.changed('dev-other');
    expect(cache.lookup('spiffe://a').view).toBeDefined();
    cache.changed('dev-a');
    expect(cache.lookup('spiffe://a').view).toBeUndefined();
  });

  it('does not keep an answer when any change arrived while it was being read', () => {
    const { cache } = setup();
    const { ticket } = cache.lookup('spiffe://a');
    // The read began before this change was delivered: it may hold the old state.
    cache.changed('dev-b');
    cache.store(ticket, 'spiffe://a', view('dev-a'));
    expect(cache.lookup('spiffe://a').view).toBeUndefined();
  });

  it('uses and keeps nothing while the feed is not caught up', () => {
    const { cache, feed } = setup();
    cache.store(cache.lookup('spiffe://a').ticket, 'spiffe://a', view('dev-a'));
    feed.ok = false;
    const lookup = cache.lookup('spiffe://a');
    expect(lookup).toEqual({});
    cache.store(lookup.ticket, 'spiffe://b', view('dev-b'));
    expect(cache.stats()).toMatchObject({ entries: 1, bypassed: 1 });
  });

  it('drops every answer on a change of every device', () => {
    const { cache } = setup();
    for (const d of ['a', 'b']) cache.store(cache.lookup(`spiffe://${d}`).ticket, `spiffe://${d}`, view(`dev-${d}`));
    cache.changed(null);
    expect(cache.stats().entries).toBe(0);
  });

  it('reads an answer again once it is older than maxAgeMs', () => {
    let now = 1_000;
    const { cache } = setup({ maxAgeMs: 500, now: () => now });
    cache.store(cache.lookup('spiffe://a').ticket, 'spiffe://a', view('dev-a'));
    now += 499;
    expect(cache.lookup('spiffe://a').view).toBeDefined();
    now += 1;
    expect(cache.lookup('spiffe://a').view).toBeUndefined();
  });

  it('holds at most maxEntries answers, dropping the oldest', () => {
    const { cache } = setup({ maxEntries: 2 });
    for (const d of ['a', 'b', 'c']) cache.store(cache.lookup(`spiffe://${d}`).ticket, `spiffe://${d}`, view(`dev-${d}`));
    expect(cache.stats().entries).toBe(2);
    expect(cache.lookup('spiffe://a').view).toBeUndefined();
    expect(cache.lookup('spiffe://c').view).toBeDefined();
    // The dropped answer's device no longer maps to anything: its change touches nobody else.
    cache.changed('dev-a');
    expect(cache.lookup('spiffe://b').view).toBeDefined();
  });
});
