export const EXIT = Object.freeze({ OK: 0, ERROR: 1, USAGE: 2, OFFBOARDED: 3, IDENTITY_EXPIRED: 4 });

export class UsageError extends Error {}

export const HELP = `meshanics-agent: the Meshanics device agent

Usage:
  meshanics-agent enroll --server https://HOST:PORT --token TOKEN --name NAME (--ca-file F | --ca-fingerprint SHA256) [--data-dir DIR]
  meshanics-agent run [options]
  meshanics-agent --help | --version
  meshanics-agent COMMAND --help
`;

export const ENROLL_HELP = `meshanics-agent enroll: join a fleet

Generates the device key pair on this device (the private key never leaves it, mode 0600),
sends a certificate request with the enrollment token to the server, and writes the
certificate, CA bundle, TUF root and server addresses into the data dir, so that
\`meshanics-agent run --data-dir DIR\` needs nothing else.

Options:
  --server URL                the enrollment endpoint, https://host:port (MESHANICS_ENROLL_SERVER)
  --token TOKEN               enrollment token from the operator (MESHANICS_ENROLL_TOKEN)
  --name NAME                 this device's name: a DNS label, unique in its fleet
  --ca-file FILE              pin the server by this CA certificate (PEM)
  --ca-fingerprint SHA256     or pin it by the sha256 fingerprint of its CA certificate
  --data-dir DIR              (MESHANICS_DATA_DIR, default /var/lib/meshanics)
  --force                     replace an existing enrollment in DIR
`;

export const RUN_HELP = `meshanics-agent run: converge on the desired state

Options (each also as an environment variable; flags win over variables, variables over
the config file, and the config file over an enrolled identity in the data dir):
  --data-dir DIR              agent state, identity and artifacts (MESHANICS_DATA_DIR, default /var/lib/meshanics)
  --config FILE               device config: allowlists, plugins, logs, tuf, defaults for these flags
                              (MESHANICS_CONFIG, default /etc/meshanics/agent.json; a missing default = deny all)
  --server HOST:PORT          device gRPC API (MESHANICS_SERVER)
  --cert FILE                 device certificate, PEM (MESHANICS_CERT)
  --key FILE                  device private key, PEM (MESHANICS_KEY)
  --ca FILE                   CA bundle that signs the server, PEM (MESHANICS_CA)
  --artifact-server URL       https://host:port of the TUF repository (MESHANICS_ARTIFACT_SERVER)
  --tuf-root FILE             pinned TUF root metadata (MESHANICS_TUF_ROOT)
  --tag KEY=VALUE             a device tag; repeatable (MESHANICS_TAGS, comma separated)
  --plugins A,B               plugin packages or paths (MESHANICS_PLUGINS, default: the config's plugins, else the default bundle)
  --plugins-dir DIR           where plugins named by package are found first: DIR/<name>/ or DIR/node_modules/<name>/
                              (MESHANICS_PLUGINS_DIR; default <install root>/plugins in the device package, else
                              <data-dir>/plugins; the config file's folder's node_modules is searched next)
  --container-runtime R       auto|podman|docker|none|SOCKET (MESHANICS_CONTAINER_RUNTIME, default auto)
  --log-level LEVEL           trace|debug|info|warn|error (MESHANICS_LOG_LEVEL, default info)

Exit codes: 0 stopped, 1 runtime error, 2 usage or configuration error,
3 offboarded (key material wiped; terminal), 4 certificate expired (enroll again; terminal).
`;
