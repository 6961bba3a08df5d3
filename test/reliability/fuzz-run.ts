/**
 * `npm run fuzz`: hostile input through the whole gateway, 100,000 messages by default (test/reliability/
 * fuzz-gateway.ts says what is sent and asserted). Prints progress and a summary; exits 1 on any crash or
 * violation. Environment: CSTP_FUZZ_MESSAGES, CSTP_FUZZ_SEED, CSTP_FUZZ_PAIRS (gateway pairs, default 2),
 * CSTP_FUZZ_SESSIONS (SMTP sessions per gateway, default 6), CSTP_FUZZ_DECRYPT_EVERY (default 4), CSTP_FUZZ_MINUTES
 * (time box: stop sending after this many minutes).
 */
import { formatSummary, RSS_BOUND_MB, runFuzz } from './fuzz-gateway';

async function main(): Promise<void> {
  const env = (name: string, fallback: number): number => Number(process.env[name] ?? fallback);
  const summary = await runFuzz({
    messages: env('CSTP_FUZZ_MESSAGES', 100_000),
    seed: env('CSTP_FUZZ_SEED', Date.now() % 2 ** 31),
    pairs: env('CSTP_FUZZ_PAIRS', 2),
    sessions: env('CSTP_FUZZ_SESSIONS', 6),
    decryptEvery: env('CSTP_FUZZ_DECRYPT_EVERY', 4),
    progressEvery: env('CSTP_FUZZ_PROGRESS', 1000),
    log: (line) => console.log(line),
    // CSTP_FUZZ_MINUTES: stop sending new messages after this long (a time-boxed run reports how many it sent).
    stopAt: process.env.CSTP_FUZZ_MINUTES ? Date.now() + Number(process.env.CSTP_FUZZ_MINUTES) * 60_000 : undefined,
  });
  console.log(formatSummary(summary));
  const failed = summary.crashes.length > 0 || summary.violations.length > 0 || summary.maxRssMb > RSS_BOUND_MB;
  process.exitCode = failed ? 1 : 0;
}

main().catch((err: Error) => {
  console.error(err.stack ?? err.message);
  process.exit(2);
});
