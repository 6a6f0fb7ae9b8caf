// The cache's own rules, with a stand-in feed whose caughtUp() the test sets (the real feeds
// are tested against real databases in device-state-feed.test.ts, and the whole through gRPC
// in heartbeat-cache.test.ts): when an answer may be kept, used, and must be dropped.
import { describe, expect, it } from 'vitest';
import { HeartbeatCache, type HeartbeatView } from '../src/device-api/heartbeat-cache.js';

const view = (deviceId: string, digest = 'd0'): HeartbeatView => ({
  deviceId,
  installedDigest: digest,
  assignments: [],
  logRequests: [],
  nextHeartbeatSeconds: 30,
});

function setup(options: ConstructorParameters<typeof HeartbeatCache>[0] = {}) {
  // `held`: devices whose changes have not all been delivered yet (PostgreSQL's scoped fences).
  const feed = {
    ok: true,
    held: new Set<string>(),
    caughtUp(deviceId?: string) {
      return this.ok && (deviceId === undefined ? this.held.size === 0 : !this.held.has(deviceId));
    },
    close: async () => undefined,
  };
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

  it('does not keep an answer when its device changed while it was being read', () => {
    const { cache } = setup();
    const { ticket } = cache.lookup('spiffe://a');
    // The read began before this change was delivered: it may hold the old state.
    cache.changed('dev-a');
    cache.store(ticket, 'spiffe://a', view('dev-a'));
    expect(cache.lookup('spiffe://a').view).toBeUndefined();
  });

  it('keeps an answer when only other devices changed while it was being read', () => {
    const { cache } = setup();
    const { ticket } = cache.lookup('spiffe://a');
    cache.changed('dev-b');
    cache.changed('dev-c');
    cache.store(ticket, 'spiffe://a', view('dev-a'));
    expect(cache.lookup('spiffe://a').view).toEqual(view('dev-a'));
  });

  it('does not keep an answer when every device changed while it was being read', () => {
    const { cache } = setup();
    const { ticket } = cache.lookup('spiffe://a');
    cache.changed(null);
    cache.store(ticket, 'spiffe://a', view('dev-a'));
    expect(cache.lookup('spiffe://a').view).toBeUndefined();
  });

  it('does not keep an answer read across more changes than it remembers, whichever devices they were', () => {
    const { cache } = setup();
    const { ticket } = cache.lookup('spiffe://a');
    cache.changed('dev-a');
    // dev-a's change is pushed out of the remembered ones by 4096 changes of other devices.
    for (let i = 0; i < 4096; i++) cache.changed(`dev-${i}`);
    cache.store(ticket, 'spiffe://a', view('dev-a'));
    expect(cache.lookup('spiffe://a').view).toBeUndefined();
    // A read that began after the forgotten change is kept.
    const later = cache.lookup('spiffe://a').ticket;
    cache.store(later, 'spiffe://a', view('dev-a'));
    expect(cache.lookup('spiffe://a').view).toEqual(view('dev-a'));
  });

  it('drops every answer of a device seen under two certificates when the device changes', () => {
    const { cache } = setup();
    // The device row's SPIFFE ID rewritten by hand: the same device under a new certificate.
    cache.store(cache.lookup('spiffe://old').ticket, 'spiffe://old', view('dev-a'));
    cache.store(cache.lookup('spiffe://new').ticket, 'spiffe://new', view('dev-a'));
    cache.changed('dev-a');
    expect(cache.lookup('spiffe://old').view).toBeUndefined();
    expect(cache.lookup('spiffe://new').view).toBeUndefined();
    expect(cache.stats().entries).toBe(0);
  });

  it('keeps using answers of devices the feed is not holding back', () => {
    const { cache, feed } = setup();
    for (const d of ['a', 'b']) cache.store(cache.lookup(`spiffe://${d}`).ticket, `spiffe://${d}`, view(`dev-${d}`));
    feed.held.add('dev-a');
    expect(cache.lookup('spiffe://a')).toEqual({});
    expect(cache.lookup('spiffe://b').view).toEqual(view('dev-b'));
    // A certificate never seen: its device is unknown, so it waits for every device.
    expect(cache.lookup('spiffe://new')).toEqual({});
    // A dropped answer still tells which device its certificate is.
    cache.changed('dev-b');
    feed.held.add('dev-c');
    expect(cache.lookup('spiffe://b').ticket).toBeDefined();
    expect(cache.stats()).toMatchObject({ entries: 1, bypassed: 2 });
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
