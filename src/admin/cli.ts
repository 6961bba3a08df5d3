/**
 * The `cstp` command line: `cstp <group> <command> [options]`. Each group lives in its own
 * module; this file only dispatches and turns errors into one line on stderr and an exit code
 * (see EXIT in cli-support.ts). Failures never leave a partial --out file.
 */
import { EXIT, UsageError, printUsage, type Command } from './cli-support';
import { smimeCommands } from './smime-commands';

const GROUPS: Record<string, { summary: string; commands: Record<string, Command> }> = {
  smime: { summary: 'S/MIME on RFC 5322 messages (stdin to stdout)', commands: smimeCommands },
};

function topUsage(): number {
  const lines = Object.entries(GROUPS).map(([name, g]) => `  cstp ${name} ${Object.keys(g.commands).join('|')} [options]\n      ${g.summary}`);
  const details = Object.values(GROUPS).flatMap((g) => Object.values(g.commands).map((c) => c.usage));
  process.stdout.write(`cstp: the cryptographic SMTP transparent proxy

Usage:
${lines.join('\n')}
  cstp <group> <command> --help   help for one command

Common options: --in FILE (default stdin), --out FILE (default stdout).

${details.join('\n\n')}
`);
  return EXIT.ok;
}

const isHelp = (arg: string | undefined): boolean => arg === undefined || arg === '--help' || arg === '-h' || arg === 'help';

async function dispatch(argv: string[]): Promise<number> {
  const [groupName, commandName, ...rest] = argv;
  if (isHelp(groupName)) return topUsage();
  const group = GROUPS[groupName];
  if (!group) throw new UsageError(`unknown command "${groupName}" (try cstp --help)`);
  if (isHelp(commandName)) return topUsage();
  const command = group.commands[commandName];
  if (!command) throw new UsageError(`unknown command "${groupName} ${commandName}" (try cstp --help)`);
  if (rest.includes('--help') || rest.includes('-h')) return printUsage(command);
  return command.run(rest);
}

/** Runs the CLI; resolves to the exit code. Never throws. */
export async function main(argv: string[]): Promise<number> {
  try {
    return await dispatch(argv);
  } catch (e) {
    const err = e as Error;
    if (err instanceof UsageError) {
      process.stderr.write(`cstp: ${err.message}\n`);
      return EXIT.usage;
    }
    process.stderr.write(`cstp: ${(err.message || String(err)).split('\n')[0]}\n`);
    if (process.env.CSTP_DEBUG) process.stderr.write(`${err.stack}\n`);
    return EXIT.failed;
  }
}
