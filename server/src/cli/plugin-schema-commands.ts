// plugin-schema add | ls: custom artifact kinds and probe types from vendor plugins.
import { print, withDataDir, type Command } from './args.js';

export const PLUGIN_SCHEMA_COMMANDS: Command[] = [
  {
    name: 'plugin-schema add',
    summary: "teach the server a vendor plugin's kind, or upgrade it: stores the JSON Schema from its side-effect-free schema module",
    usage: 'plugin-schema add MODULE',
    options: {},
    help: [
      "  MODULE                 path of the plugin's schema module (e.g. node_modules/@vendor/x/dist/schema.js)",
      '',
      'Idempotent: the same schema again changes nothing. A new schema for a kind already added replaces it,',
      'unless it rejects the spec of an artifact still in flight (an active assignment or an unfinished rollout):',
      'then nothing changes (MESH_ERR_PLUGIN_SCHEMA_IN_USE). A running serve picks the change up without a restart.',
    ],
    positionals: { min: 1, max: 1 },
    async run(values, positionals, command) {
      const { addCustomSchema } = await import('../catalog/custom-plugin-schemas.js');
      const added = await withDataDir(values, command, async (ctx) => {
        const file = await addCustomSchema(ctx.layout.root, positionals[0]!, ctx.store);
        if (file.change !== 'unchanged') {
          await ctx.store.appendAudit({
            actor: 'operator:cli',
            action: `plugin_schema.${file.change}`,
            subject: `${file.what}-kind:${file.kind}`,
            details: { source: file.source },
          });
        }
        return file;
      });
      print({ what: added.what, kind: added.kind, source: added.source, change: added.change, rejectedSpecs: added.rejectedSpecs });
    },
  },
  {
    name: 'plugin-schema ls',
    summary: 'list the custom kinds this server validates',
    usage: 'plugin-schema ls',
    options: {},
    help: [],
    async run(values, _positionals, command) {
      const { loadCustomSchemas } = await import('../catalog/custom-plugin-schemas.js');
      print({
        schemas: await withDataDir(values, command, (ctx) => loadCustomSchemas(ctx.layout.root).map(({ what, kind, source, addedAt }) => ({ what, kind, source, addedAt }))),
      });
    },
  },
];
