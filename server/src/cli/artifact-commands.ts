// artifact publish and withdraw, assign and assignment show.
import {
  artifactRefOpt,
  jsonOpt,
  parseArtifactRef,
  print,
  printFromDataDir,
  PROBE_HELP,
  PROBE_OPTIONS,
  probeOpt,
  required,
  requireFlags,
  withDataDir,
  type Command,
} from './args.js';

export const ARTIFACT_COMMANDS: Command[] = [
  {
    name: 'artifact publish',
    summary: 'sign a file into the TUF repository as an artifact version',
    usage: 'artifact publish FILE --name NAME --version VERSION --kind KIND [--spec JSON] [--fleet FLEET]',
    options: { name: { type: 'string' }, version: { type: 'string' }, kind: { type: 'string' }, spec: { type: 'string' }, fleet: { type: 'string' } },
    help: [
      '  --name NAME            artifact name (unique across fleets: a name belongs to the fleet of its first version)',
      '  --version VERSION      artifact version (immutable once published)',
      '  --kind KIND            artifact kind (e.g. model)',
      '  --spec JSON            kind-specific spec, validated by the kind plugin schema (default {})',
      '  --fleet FLEET          the fleet the artifact belongs to: only its devices may be assigned it (default *: every fleet)',
    ],
    positionals: { min: 1, max: 1 },
    async run(values, positionals, command) {
      requireFlags(values, command, ['name', 'version', 'kind']);
      const input = {
        file: positionals[0]!,
        name: required(values, 'name', command),
        version: required(values, 'version', command),
        kind: required(values, 'kind', command),
        spec: jsonOpt(values, 'spec', command) ?? '{}',
        ...(values.fleet !== undefined ? { fleet: required(values, 'fleet', command) } : {}),
        actor: 'operator:cli',
      };
      const { publishArtifact } = await import('../catalog/publish.js');
      await printFromDataDir(values, command, (ctx) => publishArtifact(ctx, input));
    },
  },
  {
    name: 'artifact withdraw',
    summary: 'take an artifact version out of the signed targets (refused while a rollout or a device holds it)',
    usage: 'artifact withdraw NAME@VERSION',
    options: {},
    help: [],
    positionals: { min: 1, max: 1 },
    async run(values, positionals, command) {
      const artifact = parseArtifactRef(positionals[0]!, 'NAME@VERSION', command);
      const { withdrawArtifact } = await import('../catalog/withdraw.js');
      await printFromDataDir(values, command, (ctx) => withdrawArtifact(ctx, { ...artifact, actor: 'operator:cli' }));
    },
  },
  {
    name: 'assign',
    summary: 'assign an artifact version to a device (supersedes its current one of that name)',
    usage: 'assign --fleet FLEET --device NAME --artifact NAME@VERSION --probe-type TYPE --probe-spec JSON [options]',
    options: {
      fleet: { type: 'string' },
      device: { type: 'string' },
      artifact: { type: 'string' },
      ...PROBE_OPTIONS,
    },
    help: [
      '  --fleet FLEET               fleet of the device',
      '  --device NAME               device name',
      '  --artifact NAME@VERSION     published artifact version',
      ...PROBE_HELP,
    ],
    async run(values, _positionals, command) {
      requireFlags(values, command, ['fleet', 'device', 'artifact', 'probe-type', 'probe-spec']);
      const artifact = artifactRefOpt(values, command);
      const input = {
        fleet: required(values, 'fleet', command),
        device: required(values, 'device', command),
        artifact: artifact.name,
        version: artifact.version,
        probe: probeOpt(values, command),
        actor: 'operator:cli',
      };
      const { createAssignment } = await import('../fleet/assignments.js');
      const created = await withDataDir(values, command, (ctx) => createAssignment(ctx, input));
      print({ assignmentId: created.assignmentId, superseded: created.superseded });
    },
  },
  {
    name: 'assignment show',
    summary: 'show an assignment, its state and its status reports',
    usage: 'assignment show ID',
    options: {},
    help: [],
    positionals: { min: 1, max: 1 },
    async run(values, positionals, command) {
      const { getAssignment } = await import('../fleet/assignments.js');
      await printFromDataDir(values, command, (ctx) => getAssignment(ctx, positionals[0]!));
    },
  },
];
