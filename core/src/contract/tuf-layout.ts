// Where the server's TUF repository lives on its artifact HTTPS server, so that the
// publisher and the agent agree on URLs. The server's root always sets consistent_snapshot
// (TUF spec 6.2): metadata is served as VERSION.ROLE.json and targets as DIR/HASH.BASENAME,
// so a client never mixes files from two repository versions. The agent does not assume it:
// it names what it fetches after its trusted root (spec 5.5.1, 5.6.1, 5.7.3;
// tuf/tuf-target-source.ts).

export const TUF_METADATA_PREFIX = '/tuf/metadata/';
export const TUF_TARGETS_PREFIX = '/tuf/targets/';

/** `name/version/file`: the TUF target path of one artifact version. */
export function artifactTargetPath(name: string, version: string, fileName: string): string {
  return `${name}/${version}/${fileName}`;
}

/**
 * Why a target path cannot be fetched safely, or undefined. TUF target paths are URL paths
 * below the targets prefix (spec 5.7.3); an empty, "." or ".." segment would be collapsed by
 * URL resolution into a request outside it, and a backslash or NUL means something else to
 * other tools. Both the agent (before it fetches) and the server (before it signs an imported
 * target) refuse such a path.
 */
export function targetPathProblem(targetPath: string): string | undefined {
  if (targetPath.length === 0 || targetPath.length > 1024) return 'must be 1 to 1024 characters';
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
  if (/[\\\u0000-\u001f\u007f]/.test(targetPath)) return 'must not contain a backslash or control characters';
  const bad = targetPath.split('/').find((segment) => segment === '' || segment === '.' || segment === '..');
  if (bad !== undefined) return `must be "/"-separated segments, none of them empty, "." or ".." (found ${JSON.stringify(bad)})`;
  return undefined;
}

/** The hash-prefixed path a consistent-snapshot repository serves a target under. */
export function hashPrefixedTargetPath(targetPath: string, sha256: string): string {
  const slash = targetPath.lastIndexOf('/');
  const dir = slash >= 0 ? targetPath.slice(0, slash + 1) : '';
  const base = slash >= 0 ? targetPath.slice(slash + 1) : targetPath;
  return `${dir}${sha256}.${base}`;
}

/** Artifact names and versions end up in paths and URLs: keep them to a safe alphabet. */
export const ARTIFACT_NAME = /^[a-z0-9]([a-z0-9._-]{0,126}[a-z0-9])?$/;
export const ARTIFACT_VERSION = /^[A-Za-z0-9]([A-Za-z0-9._+-]{0,62}[A-Za-z0-9])?$/;
