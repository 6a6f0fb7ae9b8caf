// Drives podman for the server-image tests with the image build's own store and settings
// (scripts/image/podman.mjs, shared with the image benchmark), so the tests run exactly the
// image `npm run image` made.
import { podman } from '../../scripts/image/podman.mjs';

export { freePorts, podman, podmanAvailable, PODMAN_ENV, runServerContainer } from '../../scripts/image/podman.mjs';

/** `meshanics-server ARGS` inside the running container, as its own (non-root) user; parsed JSON output. */
export async function serverCliIn(container: string, args: string[]): Promise<any> {
  const { stdout } = await podman(['exec', container, 'meshanics-server', ...args]);
  const text = stdout.trim();
  return text ? JSON.parse(text) : undefined;
}
