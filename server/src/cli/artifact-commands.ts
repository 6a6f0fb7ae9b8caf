// artifact publish, assign and assignment show.
import { PROBE_DEFAULTS } from '../defaults.js';
import { intOpt, jsonOpt, print, required, requireFlags, UsageError, withDataDir, type Command } from './args.js';

export const ARTIFACT_COMMANDS: Command[] = [
  {
    name: 'artifact publish',
    summary: 'sign a file into the TUF repository as an artifact version',
    usage: 'artifact publish FILE --name NAME --version VERSION --kind KIND [--spec JSON]',
    options: { name: { type: 'string' }, version: { type: 'string' }, kind: { type: 'string' }, spec: { type: 'string' } },
    help: [
      '  --name NAME            artifact name',
      '  --version VERSION      artifact version (immutable once published)',
      '  --kind KIND            artifact kind (e.g. model)',
      '  --spec JSON            kind-specific spec, validated by the kind plugin schema (default {})',
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
        actor: 'operator:cli',
      };
      const { publishArtifact } = await import('../artifacts.js');
      print(await withDataDir(values, command, (ctx) => publishArtifact(ctx, input)));
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
      'probe-type': { type: 'string' },
      'probe-spec': { type: 'string' },
      'probe-timeout': { type: 'string' },
      'probe-attempts': { type: 'string' },
      'probe-initial-delay': { type: 'string' },
    },
    help: [
      '  --fleet FLEET               fleet of the device',
      '  --device NAME               device name',
      '  --artifact NAME@VERSION     published artifact version',
      '  --probe-type TYPE           health probe type (e.g. file)',
      '  --probe-spec JSON           probe spec, validated by the probe plugin schema',
      `  --probe-timeout SECS        1-300 (default ${PROBE_DEFAULTS.timeoutSeconds})`,
      `  --probe-attempts N          1-10 (default ${PROBE_DEFAULTS.attempts})`,
      `  --probe-initial-delay SECS  0-3600 (default ${PROBE_DEFAULTS.initialDelaySeconds})`,
    ],
    async run(values, _positionals, command) {
      requireFlags(values, command, ['fleet', 'device', 'artifact', 'probe-type', 'probe-spec']);
      const ref = required(values, 'artifact', command);
      const at = ref.indexOf('@');
      if (at <= 0 || at === ref.length - 1) throw new UsageError(`--artifact must be NAME@VERSION, got "${ref}"`, command.name);
      const input = {
        fleet: required(values, 'fleet', command),
        device: required(values, 'device', command),
        artifact: ref.slice(0, at),
        version: ref.slice(at + 1),
        probe: {
          type: required(values, 'probe-type', command),
          spec: jsonOpt(values, 'probe-spec', command)!,
          timeoutSeconds: intOpt(values, 'probe-timeout', command, PROBE_DEFAULTS.timeoutSeconds),
          attempts: intOpt(values, 'probe-attempts', command, PROBE_DEFAULTS.attempts),
          initialDelaySeconds: intOpt(values, 'probe-initial-delay', command, PROBE_DEFAULTS.initialDelaySeconds),
        },
        actor: 'operator:cli',
      };
      const { createAssignment } = await import('../assignments.js');
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
      const { getAssignment } = await import('../assignments.js');
      print(await withDataDir(values, command, (ctx) => getAssignment(ctx, positionals[0]!)));
    },
  },
];
