/**
 * The `cstp` command line: `cstp <group> <command> [options]`. Each group lives in its own
 * module; this file only dispatches and turns errors into one line on stderr and an exit code
 * (see EXIT in cli-support.ts). Failures never leave a partial --out file.
 */
import { EXIT, UsageError, printUsage, type Command } from './cli-support';
import { doctorCommands } from './doctor-commands';
import { policyCommands } from './policy-commands';
import { smimeCommands } from './smime-commands';
import { certCommands, initCommands, keyCommands, untrustedCommands } from './store-commands';

const GROUPS: Record<string, { summary: string; commands: Record<string, Command> }> = {
  smime: { summary: 'S/MIME on RFC 5322 messages (stdin to stdout)', commands: smimeCommands },
  init: { summary: 'create the key store and a gateway key and certificate for a domain', commands: initCommands },
  cert: { summary: 'certificates in the key store (remote gateways and users, local users, trust anchors)', commands: certCommands },
  key: { summary: 'private keys in the key store (gateway identities, local users)', commands: keyCommands },
  untrusted: { summary: 'certificates harvested from signatures, for review', commands: untrustedCommands },
  policy: { summary: 'the securing plan the gateway would apply to a message, for administrators', commands: policyCommands },
  doctor: { summary: 'checks the deployment (configuration, bridge and diversion, listener, addon, keys) and says how to fix each problem', commands: doctorCommands },
};

function topUsage(): number {
  const lines = Object.entries(GROUPS).map(([name, g]) => `  cstp ${[name, Object.keys(g.commands).join('|')].filter(Boolean).join(' ')} [options]\n      ${g.summary}`);
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
  // A group whose only command is keyed '' is a command itself (cstp init --domain D).
  if (group.commands['']) return runCommand(group.commands[''], argv.slice(1));
  if (isHelp(commandName)) return topUsage();
  const command = group.commands[commandName];
  if (!command) throw new UsageError(`unknown command "${groupName} ${commandName}" (try cstp --help)`);
  return runCommand(command, rest);
}

function runCommand(command: Command, args: string[]): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) return Promise.resolve(printUsage(command));
  return command.run(args);
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
