// Threshold signatures of the offline roles (root, top-level targets). A role lists n key ids
// and a threshold k; metadata is trusted only with k valid signatures from k distinct keys
// (TUF spec 5.3.4, "Check for an arbitrary software attack": "When computing the THRESHOLD
// each KEY MUST only contribute one SIGNATURE"). tufjs's Metadata.verifyDelegate counts key
// ids; this counts distinct public keys as well, so a root listing one key under two ids
// cannot make one holder count twice (the flaw fixed in go-tuf 0.3.2, GHSA-3633-5h82-39pq),
// and it names the key ids still missing, which is what a key ceremony needs to know.
// Signature checks themselves are tufjs's (Key.verifySignature).
import * as crypto from 'node:crypto';
import { Metadata, MetadataKind, Signature, type Key, type Root, type Targets } from '@tufjs/models';
import { TufError } from './errors.js';

export type OfflineRole = 'root' | 'targets';

export interface ThresholdStatus {
  role: OfflineRole;
  /** Which root states the threshold, e.g. "root v2". */
  delegator: string;
  threshold: number;
  keyids: string[];
  /** Listed key ids with a valid signature, one per distinct public key. */
  signedBy: string[];
  /** Listed key ids without a valid signature (absent, invalid, or a second id of a key already counted). */
  missing: string[];
  met: boolean;
}

/**
 * The public key itself, whatever its encoding in keyval.public: tufjs accepts hex in either
 * case and PEM for ed25519 and ecdsa keys (its getPublicKey), so one key can be written several
 * ways under as many key ids, each verifying the same signature. Parsed by node:crypto and
 * compared as SPKI DER; a value node cannot parse (which tufjs could not verify either) is
 * compared as written, case-folded.
 */
export function keyMaterial(key: Key): string {
  const value = String(key.keyVal.public);
  try {
    let parsed: crypto.KeyObject | undefined;
    if (value.startsWith('-----BEGIN PUBLIC KEY-----')) parsed = crypto.createPublicKey(value);
    else if (key.keyType === 'ed25519' && /^[0-9a-fA-F]{64}$/.test(value))
      parsed = crypto.createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(value, 'hex').toString('base64url') }, format: 'jwk' });
    else if (key.keyType.startsWith('ecdsa') && /^[0-9a-fA-F]+$/.test(value)) {
      // tufjs reads a hex ecdsa key as a P-256 point; compressed or not, it is the same key.
      const point = crypto.ECDH.convertKey(value, 'prime256v1', 'hex', undefined, 'uncompressed') as Buffer;
      parsed = crypto.createPublicKey({
        key: { kty: 'EC', crv: 'P-256', x: point.subarray(1, 33).toString('base64url'), y: point.subarray(33).toString('base64url') },
        format: 'jwk',
      });
    }
    if (parsed) return parsed.export({ type: 'spki', format: 'der' }).toString('hex');
  } catch {
    // Not a key node can read: compared as written below.
  }
  return `${key.keyType}:${value.toLowerCase()}`;
}

/**
 * Key ids of `root`'s `role` that name a public key an earlier key id of the role already
 * names. tufjs (the agent's TUF client) counts key ids toward a threshold, so such a root would
 * let one holder meet a threshold of two on every device (spec 5.3.4: "each KEY MUST only
 * contribute one SIGNATURE"); the server refuses to sign or import one.
 */
export function aliasedKeyIds(root: Root, role: string): Array<{ keyid: string; sameKeyAs: string }> {
  const seen = new Map<string, string>();
  const aliases: Array<{ keyid: string; sameKeyAs: string }> = [];
  for (const keyid of root.roles[role]?.keyIDs ?? []) {
    const key = root.keys[keyid];
    if (!key) continue;
    const material = keyMaterial(key);
    const first = seen.get(material);
    if (first !== undefined) aliases.push({ keyid, sameKeyAs: first });
    else seen.set(material, keyid);
  }
  return aliases;
}

/** The distinct-key count of `md`'s signatures against `delegator`'s `role` (spec 4.3, 5.3.4). */
export function thresholdStatus(delegator: Metadata<Root>, role: OfflineRole, md: Metadata<Root> | Metadata<Targets>): ThresholdStatus {
  const listed = delegator.signed.roles[role];
  const keyids = [...(listed?.keyIDs ?? [])];
  const threshold = listed?.threshold ?? Number.POSITIVE_INFINITY;
  const counted = new Set<string>();
  const signedBy: string[] = [];
  const missing: string[] = [];
  for (const keyid of keyids) {
    const key = delegator.signed.keys[keyid];
    let valid = false;
    if (key && md.signatures[keyid]) {
      try {
        key.verifySignature(md);
        valid = true;
      } catch {
        valid = false;
      }
    }
    // The key material, not its JSON: extra fields, another id or another encoding must not make it a second key.
    const publicKey = key ? keyMaterial(key) : keyid;
    if (valid && !counted.has(publicKey)) {
      counted.add(publicKey);
      signedBy.push(keyid);
    } else {
      missing.push(keyid);
    }
  }
  return { role, delegator: `root v${delegator.signed.version}`, threshold, keyids, signedBy, missing, met: signedBy.length >= threshold };
}

/** One line for an operator: how far the signatures are from the threshold, and who is missing. */
export function describeThreshold(s: ThresholdStatus): string {
  return `${s.signedBy.length} of the ${s.threshold} valid signatures needed from distinct ${s.role} keys of ${s.delegator}: signed by [${s.signedBy.join(', ')}]; missing [${s.missing.join(', ')}]`;
}

/**
 * Parses signed metadata from a file's bytes. Signatures are read here rather than by
 * Metadata.fromJSON (which throws on a repeated key id): an identical repeated signature is
 * kept once — the same key twice counts once — while two different signatures under one key
 * id make the file ambiguous and refused.
 */
export function parseSignedFile<T extends Root | Targets>(bytes: Buffer | string, what: string, kinds: readonly OfflineRole[]): { kind: OfflineRole; md: Metadata<T> } {
  let json: { signed?: { _type?: unknown }; signatures?: unknown };
  try {
    json = JSON.parse(bytes.toString()) as typeof json;
  } catch (err) {
    throw new TufError('MESH_ERR_TUF_IMPORT_INVALID', `${what} is not valid ${kinds.join(' or ')} metadata: not JSON: ${(err as Error).message}`, { cause: err });
  }
  const kind = json?.signed?._type;
  if (typeof kind !== 'string' || !(kinds as readonly string[]).includes(kind)) {
    throw new TufError('MESH_ERR_TUF_IMPORT_INVALID', `${what}: "signed._type" is ${JSON.stringify(kind)}, expected ${kinds.map((k) => `"${k}"`).join(' or ')}`);
  }
  if (!Array.isArray(json.signatures)) throw new TufError('MESH_ERR_TUF_IMPORT_INVALID', `${what}: "signatures" is not an array`);
  const signatures = new Map<string, Signature>();
  for (const entry of json.signatures as unknown[]) {
    let sig: Signature;
    try {
      sig = Signature.fromJSON(entry as never);
    } catch (err) {
      throw new TufError('MESH_ERR_TUF_IMPORT_INVALID', `${what}: a signature is malformed: ${(err as Error).message}`, { cause: err });
    }
    const seen = signatures.get(sig.keyID);
    if (seen && seen.sig !== sig.sig) throw new TufError('MESH_ERR_TUF_IMPORT_INVALID', `${what} holds two different signatures by key ${sig.keyID}`);
    signatures.set(sig.keyID, sig);
  }
  let md: Metadata<T>;
  try {
    md = Metadata.fromJSON(kind as MetadataKind.Root, { ...json, signatures: [] } as never) as unknown as Metadata<T>;
  } catch (err) {
    throw new TufError('MESH_ERR_TUF_IMPORT_INVALID', `${what} is not valid ${kind} metadata: ${(err as Error).message}`, { cause: err });
  }
  for (const [keyid, sig] of signatures) md.signatures[keyid] = sig;
  return { kind: kind as OfflineRole, md };
}
