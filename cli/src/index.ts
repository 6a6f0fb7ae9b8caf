// `meshanics`: the operator CLI over the REST API (docs/operator-api.md).
import { checkPositionals, type Command, commandHelp, groupHelp, mainHelp, makeContext, parseCommandArgs, str } from './command.js';
import { ARTIFACT_COMMANDS } from './commands/artifacts.js';
import { DEVICE_COMMANDS } from './commands/devices.js';
import { GROUP_COMMANDS } from './commands/groups.js';
import { LOG_AUDIT_COMMANDS } from './commands/logs-audit.js';
import { ROLLOUT_COMMANDS } from './commands/rollouts.js';
import { SESSION_COMMANDS } from './commands/session.js';
import { resolveConfig } from './config.js';
import { trustCaFile } from './tls.js';
import { CliError, EXIT, UsageError } from './errors.js';
import type { Out } from './output.js';

export { EXIT, EXIT_CODE_HELP } from './errors.js';
export { ApiClient } from './client.js';

export const COMMANDS: Command[] = [...SESSION_COMMANDS, ...DEVICE_COMMANDS, ...ARTIFACT_COMMANDS, ...GROUP_COMMANDS, ...ROLLOUT_COMMANDS, ...LOG_AUDIT_COMMANDS];

function findCommand(words: string[]): Command | undefined {
  return COMMANDS.filter((c) => c.path.every((p, i) => words[i] === p)).sort((a, b) => b.path.length - a.path.length)[0];
}

/** Runs the CLI; resolves with the exit code. */
export async function main(argv: string[], out: Out = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const args = [...argv];
  if (args[0] === 'help') {
    args.shift();
    args.push('--help');
  }
  const wantsHelp = args.includes('--help') || args.includes('-h');
  // The command words, with global options allowed before and between them.
  const words: string[] = [];
  const wordAt: number[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--config' || a === '--server' || a === '--ca-file') {
      i++;
      continue;
    }
    if (a === '--json' || a === '--help' || a === '-h' || a.startsWith('--config=') || a.startsWith('--server=') || a.startsWith('--ca-file=')) continue;
    if (a.startsWith('-')) break;
    words.push(a);
    wordAt.push(i);
  }
  try {
    if (words.length === 0) {
      if (wantsHelp || args[0] === '--help') {
        out.stdout.write(mainHelp(COMMANDS));
        return EXIT.OK;
      }
      if (args.includes('--version')) {
        out.stdout.write('0.1.0\n');
        return EXIT.OK;
      }
      out.stderr.write(mainHelp(COMMANDS));
      return EXIT.USAGE;
    }
    const command = findCommand(words);
    if (!command) {
      const groups = new Set(COMMANDS.filter((c) => c.path.length > 1).map((c) => c.path[0]));
      if (groups.has(words[0])) {
        if (wantsHelp && words.length === 1) {
          out.stdout.write(groupHelp(words[0]!, COMMANDS));
          return EXIT.OK;
        }
        out.stderr.write(
          `meshanics: ${words.length > 1 ? `unknown command "${words.slice(0, 2).join(' ')}"` : `"${words[0]}" needs a command`}\n\n${groupHelp(words[0]!, COMMANDS)}`,
        );
        return EXIT.USAGE;
      }
      throw new UsageError(`unknown command "${words[0]}" (run "meshanics --help")`);
    }
    if (wantsHelp) {
      out.stdout.write(commandHelp(command));
      return EXIT.OK;
    }
    const consumed = new Set(wordAt.slice(0, command.path.length));
    const { values, positionals } = parseCommandArgs(
      command,
      args.filter((_, i) => !consumed.has(i)),
    );
    checkPositionals(command, positionals);
    const config = resolveConfig({ configFile: str(values, 'config'), server: str(values, 'server'), caFile: str(values, 'ca-file') });
    if (config.caFile !== undefined) await trustCaFile(config.caFile);
    const ctx = makeContext(command, values, positionals, config, out);
    const code = await command.run(ctx);
    return typeof code === 'number' ? code : EXIT.OK;
  } catch (err) {
    if (err instanceof CliError) {
      out.stderr.write(`meshanics: ${err instanceof UsageError ? 'usage: ' : ''}${err.message}\n`);
      return err.exitCode;
    }
    out.stderr.write(`meshanics: ${(err as Error)?.stack ?? String(err)}\n`);
    return EXIT.ERROR;
  }
}
