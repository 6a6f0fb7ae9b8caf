#!/usr/bin/env node
// meshanics-agent: the device daemon's command line.
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { Agent } from '../agent.js';
import { isMeshError } from '../errors.js';
import { enrollCommand } from './enroll-command.js';
import { AGENT_VERSION, runCommand } from './run-command.js';
import { ENROLL_HELP, EXIT, HELP, RUN_HELP, UsageError } from './usage.js';

export { EXIT } from './usage.js';

const COMMANDS: Record<string, { run: (argv: string[], env: NodeJS.ProcessEnv) => Promise<number>; help: string }> = {
  run: { run: runCommand, help: RUN_HELP },
  enroll: { run: enrollCommand, help: ENROLL_HELP },
};

const CONFIG_CODES = new Set(['MESH_ERR_CONFIG_INVALID', 'MESH_ERR_PLUGIN_INVALID', 'MESH_ERR_PLUGIN_DUPLICATE']);

export async function main(argv = process.argv.slice(2)): Promise<number> {
  const [name, ...rest] = argv;
  const command = name ? COMMANDS[name] : undefined;
  try {
    if (!name || name === '--help' || name === '-h' || name === 'help') {
      process.stdout.write(HELP);
      return name ? EXIT.OK : EXIT.USAGE;
    }
    if (name === '--version') {
      // Three lines a support request needs: what was installed (a package built from a dirty
      // or untagged tree says so: 0.1.0+g<sha>.dirty), which plugins can load (the core API
      // range check), and which runtime runs it (a package carries its own Node.js).
      process.stdout.write(`meshanics-agent ${AGENT_VERSION}\ncore API ${Agent.CORE_API_VERSION}\nNode.js ${process.version} (${process.platform}-${process.arch})\n`);
      return EXIT.OK;
    }
    if (!command) throw new UsageError(`unknown command "${name}"`);
    return await command.run(rest, process.env);
  } catch (err) {
    if (err instanceof UsageError || (err as NodeJS.ErrnoException).code?.startsWith?.('ERR_PARSE_ARGS')) {
      const message = (err as Error).message;
      if (message) process.stderr.write(`meshanics-agent: ${message}\n\n`);
      process.stdout.write(command?.help ?? HELP);
      return message ? EXIT.USAGE : EXIT.OK;
    }
    if (isMeshError(err)) {
      const { code, message } = err;
      process.stderr.write(`meshanics-agent: ${code}: ${message}\n`);
      if (CONFIG_CODES.has(code)) return EXIT.USAGE;
      if (code === 'MESH_ERR_OFFBOARDED') return EXIT.OFFBOARDED;
      if (code === 'MESH_ERR_IDENTITY_MISSING') return EXIT.IDENTITY_EXPIRED;
      return EXIT.ERROR;
    }
    process.stderr.write(`meshanics-agent: ${(err as Error).stack ?? String(err)}\n`);
    return EXIT.ERROR;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  process.exitCode = await main();
}
