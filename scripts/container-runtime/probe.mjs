// Exit 0 when the thing answers, 1 otherwise (never hangs: 2 s per request).
//   node probe.mjs registry 127.0.0.1:5000
//   node probe.mjs podman /tmp/meshanics-containers/podman.sock
//   node probe.mjs manifest 127.0.0.1:5000 <repo> sha256:<hex>
import http from 'node:http';

const [what, ...args] = process.argv.slice(2);

function request(options) {
  return new Promise((resolve) => {
    const req = http.request({ timeout: 2000, ...options }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve(0));
    req.end();
  });
}

function hostPort(s) {
  const [host, port] = s.split(':');
  return { host, port: Number(port) };
}

let status = 0;
if (what === 'registry') {
  status = await request({ ...hostPort(args[0]), path: '/v2/' });
} else if (what === 'podman') {
  status = await request({ socketPath: args[0], path: '/_ping' });
} else if (what === 'manifest') {
  status = await request({
    ...hostPort(args[0]),
    method: 'HEAD',
    path: `/v2/${args[1]}/manifests/${args[2]}`,
    headers: {
      accept: ['application/vnd.oci.image.manifest.v1+json', 'application/vnd.docker.distribution.manifest.v2+json'].join(', '),
    },
  });
} else {
  console.error(`unknown probe "${what}"`);
  process.exit(2);
}
process.exit(status === 200 ? 0 : 1);
