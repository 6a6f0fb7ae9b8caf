// Which failures the pipeline holds back as "the network, try again" (errors.ts,
// isTransientNetworkError) and which end the attempt. Pure classification of error objects
// shaped as tuf-js, Node's sockets and container engines produce them; the pipeline and
// container-runtime tests cover the same paths end to end against real servers.
import { describe, expect, it } from 'vitest';
import { isTransientNetworkError, MeshError, PluginStageError } from '../src/errors.js';

const refresh = (cause: unknown) => new MeshError('MESH_ERR_TUF_REFRESH', 'TUF metadata refresh failed', { cause });
const download = (cause: unknown) => new MeshError('MESH_ERR_DOWNLOAD_FAILED', 'download failed', { cause });
/** The code as a property only: the message does not name it, so only the code check can match. */
const socketError = (code: string) => Object.assign(new Error('the connection to 127.0.0.1:443 failed'), { code });

describe('isTransientNetworkError', () => {
  it.each(['ECONNRESET', 'ECONNREFUSED', 'ECONNABORTED', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH', 'ENETDOWN', 'EHOSTDOWN'])(
    'holds back a refresh that failed with %s, whether the code is a property or only in the message tuf-js rethrew',
    (code) => {
      expect(isTransientNetworkError(refresh(socketError(code)))).toBe(true);
      expect(isTransientNetworkError(refresh(new Error(`Failed to fetch timestamp.json: request to https://repo/ failed, reason: connect ${code}`)))).toBe(true);
    },
  );

  it('holds back a download answered 503 or 429, not one answered 404', () => {
    expect(isTransientNetworkError(download(Object.assign(new Error('HTTP 503'), { statusCode: 503 })))).toBe(true);
    expect(isTransientNetworkError(download(Object.assign(new Error('HTTP 429'), { statusCode: 429 })))).toBe(true);
    expect(isTransientNetworkError(download(Object.assign(new Error('HTTP 404'), { statusCode: 404 })))).toBe(false);
  });

  it("holds back a plugin's registry pull that failed on the network, in the engine's words, but not a name that does not resolve", () => {
    const pull = (text: string) => new PluginStageError('download', `download hook failed: ${text}`, { cause: download(new Error(text)) });
    expect(isTransientNetworkError(pull('dial tcp 127.0.0.1:5000: connect: connection refused'))).toBe(true);
    expect(isTransientNetworkError(pull('received unexpected HTTP status: 502 Bad Gateway'))).toBe(true);
    expect(isTransientNetworkError(pull('dial tcp: lookup registry.invalid: no such host'))).toBe(false);
  });

  it('never holds back a refused signature, a full disk, or a network failure outside the download step', () => {
    expect(isTransientNetworkError(refresh(new Error('timestamp signature verification failed')))).toBe(false);
    // A full disk whose message also names a network code (a pipe to the disk writer broke) is still the disk.
    expect(isTransientNetworkError(download(Object.assign(new Error('write EPIPE'), { code: 'ENOSPC' })))).toBe(false);
    // A verify hook that failed on the network was already given its bytes: not a download to retry.
    expect(isTransientNetworkError(new PluginStageError('verify', 'verify hook failed', { cause: download(socketError('ECONNRESET')) }))).toBe(false);
    expect(isTransientNetworkError(socketError('ECONNRESET'))).toBe(false);
  });
});
