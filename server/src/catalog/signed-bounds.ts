// Gate (a) of "never sign what a device cannot verify" (issue 23): bounds on every value a
// publish puts into signed TUF metadata or beside it. A device verifies a role by parsing it and
// re-canonicalizing "signed" with @tufjs/canonical-json (TUF spec 4.2), which recurses once per
// nesting level, refuses fractional numbers, and encodes strings as UTF-8; an input outside
// these rules made every device of every fleet refuse the whole role (a 3,000-deep manifest
// overflowed the device's stack). So, checked before anything is staged or signed:
// - depth: at most MAX_JSON_DEPTH nested objects/arrays (thousands of frames below any stack);
// - size: the canonical form of the spec at most MAX_SPEC_BYTES (it is signed, so every device
//   downloads it with its hash bin), the manifest at most MAX_MANIFEST_BYTES (only its hash is
//   signed; the catalog and the metadata dir keep the bytes);
// - numbers: integers only, not -0 (canonical JSON has no fractions; signing one threw a 500 before);
// - strings and keys: well-formed Unicode (a lone surrogate becomes U+FFFD in UTF-8, so two
//   keys could collapse into one on the device and break the signature).
// The walk is iterative: a hostile value must not overflow the stack of the check itself.
import { MeshError } from '../errors.js';

export const MAX_JSON_DEPTH = 32;
export const MAX_SPEC_BYTES = 64 * 1024;
export const MAX_MANIFEST_BYTES = 1024 * 1024;
/** One key or string value of a spec: a setting in signed metadata, not a document. */
export const MAX_SPEC_STRING_BYTES = 16 * 1024;

export interface JsonBounds {
  maxDepth: number;
  maxBytes: number;
  maxStringBytes: number;
}

export const SPEC_BOUNDS: JsonBounds = Object.freeze({ maxDepth: MAX_JSON_DEPTH, maxBytes: MAX_SPEC_BYTES, maxStringBytes: MAX_SPEC_STRING_BYTES });
export const MANIFEST_BOUNDS: JsonBounds = Object.freeze({ maxDepth: MAX_JSON_DEPTH, maxBytes: MAX_MANIFEST_BYTES, maxStringBytes: MAX_MANIFEST_BYTES });

function outOfBounds(message: string): MeshError {
  return new MeshError('MESH_ERR_ARTIFACT_OUT_OF_BOUNDS', `${message} (signed TUF metadata must stay verifiable by every device)`);
}

function pointer(pathSegments: readonly (string | number)[]): string {
  const shown = pathSegments.length > 8 ? [...pathSegments.slice(0, 8), '...'] : pathSegments;
  return shown.map(String).join('/');
}

// With the u flag a paired surrogate is one code point, so this matches lone ones only.
const LONE_SURROGATE = /[\ud800-\udfff]/u;

function checkString(s: string, at: string, what: string, maxBytes: number): number {
  if (LONE_SURROGATE.test(s)) throw outOfBounds(`${at}: ${what} is not well-formed Unicode (a lone surrogate)`);
  const bytes = Buffer.byteLength(s, 'utf8');
  if (bytes > maxBytes) throw outOfBounds(`${at}: ${what} is ${bytes} bytes, at most ${maxBytes} are allowed`);
  // Canonical JSON escapes only " and \ (one byte each), plus the quotes.
  let escapes = 0;
  for (const c of s) if (c === '"' || c === '\\') escapes += 1;
  return bytes + escapes + 2;
}

/**
 * Throws MESH_ERR_ARTIFACT_OUT_OF_BOUNDS naming the field (`field/...` path) and the bound
 * broken; returns the size of the value's canonical JSON form in bytes.
 */
export function checkSignedJson(value: unknown, field: string, bounds: JsonBounds): number {
  let bytes = 0;
  const stack: Array<{ value: unknown; path: (string | number)[] }> = [{ value, path: [field] }];
  while (stack.length > 0) {
    const { value: v, path } = stack.pop()!;
    const at = pointer(path);
    const depth = path.length - 1;
    if (v === null || typeof v === 'boolean') bytes += v === false ? 5 : 4;
    else if (typeof v === 'number') {
      if (!Number.isSafeInteger(v)) throw outOfBounds(`${at} is ${v}: numbers must be integers within ±${Number.MAX_SAFE_INTEGER}`);
      // Signed as 0, read back as 0: the value a device verifies would not be the one given.
      if (Object.is(v, -0)) throw outOfBounds(`${at} is -0, which canonical JSON writes as 0`);
      bytes += String(v).length;
    } else if (typeof v === 'string') bytes += checkString(v, at, 'the string', bounds.maxStringBytes);
    else if (Array.isArray(v) || typeof v === 'object') {
      if (depth + 1 > bounds.maxDepth) throw outOfBounds(`${at} is nested deeper than ${bounds.maxDepth} levels of objects and arrays (the bound for ${field})`);
      const entries: Array<[string | number, unknown]> = Array.isArray(v) ? v.map((e, i) => [i, e]) : Object.entries(v);
      bytes += 2 + Math.max(0, entries.length - 1);
      for (const [key, child] of entries) {
        if (typeof key === 'string') bytes += checkString(key, `${at}/${key.slice(0, 40)}`, 'the key', bounds.maxStringBytes) + 1;
        stack.push({ value: child, path: [...path, key] });
      }
    } else {
      throw outOfBounds(`${at} is a ${typeof v}, which JSON cannot hold`);
    }
    if (bytes > bounds.maxBytes) throw outOfBounds(`${field} is larger than ${bounds.maxBytes} bytes as canonical JSON (the bound for ${field})`);
  }
  return bytes;
}
