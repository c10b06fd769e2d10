import fs from 'node:fs';
import path from 'node:path';

/** Command-line parsing and help text. Configuration itself comes from config.ts. */

export type Command = 'run' | 'status' | 'check' | 'help' | 'version';

export interface CliOptions {
  command: Command;
  once: boolean;
  dryRun: boolean;
  json: boolean;
  /** With `status`: the job to trace. */
  agent?: string | undefined;
  jobId?: string | undefined;
  /** Words the parser did not understand. */
  unknown: string[];
}

export const HELP = `Usage: operator-telemetry [command] [options] [KEY=VALUE ...]

Turns each job's energy log into a signed EIP-712 attestation and delivers it exactly once
to the EnergyOracle contract (contract mode) or to the ingestion API (API mode).

Commands:
  run                     Run the daemon until SIGTERM or SIGINT (the default).
  status [AGENT JOBID]    Print what the state file records: revisions done, pending and
                          failing, the last nonce per agent, the last cycle. With an agent
                          and a job id, trace that job's revisions.
  check                   Check the configuration, the target (RPC or API), the chain id,
                          the oracle's code and the signer; exit 1 if any check fails
                          (78 if the configuration itself is invalid).

Options:
  --once                  Run one cycle (up to TELEMETRY_MAX_BATCH attestations) and exit;
                          the exit code is 0 only if nothing failed.
  --dry-run               Sign what is due and print each attestation as a JSON line;
                          send nothing and change no state.
  --json                  With status: print JSON instead of a table.
  -h, --help              Print this help.
  -v, --version           Print the version.

KEY=VALUE arguments set configuration variables, for example
  operator-telemetry TELEMETRY_MODE=api ENERGY_ORACLE_API_URL=https://ingest.example/attestations
Precedence, highest first: KEY=VALUE arguments, the environment, .env in the working
directory, built-in defaults. See the README for every variable.

Exit codes: 0 stopped cleanly; 1 crashed or (with --once / check) something failed;
65 the state file cannot be trusted; 75 another daemon owns the state file;
78 invalid configuration.`;

export function parseCli(args: readonly string[]): CliOptions {
  const options: CliOptions = {
    command: 'run',
    once: false,
    dryRun: false,
    json: false,
    unknown: [],
  };
  const positional: string[] = [];

  for (const arg of args) {
    if (arg === '--once') options.once = true;
    else if (arg === '--dry-run') options.dryRun = true;
    else if (arg === '--json') options.json = true;
    else if (arg === '-h' || arg === '--help') options.command = 'help';
    else if (arg === '-v' || arg === '--version') options.command = 'version';
    else if (/^[A-Z][A-Z0-9_]*=/.test(arg))
      continue; // Configuration, read by config.ts.
    else if (arg.startsWith('-')) options.unknown.push(arg);
    else positional.push(arg);
  }

  if (options.command !== 'run') return options;
  const [first, ...rest] = positional;
  if (first === 'status' || first === 'check' || first === 'run') {
    options.command = first;
    if (first === 'status') {
      options.agent = rest[0];
      options.jobId = rest[1];
      options.unknown.push(...rest.slice(2));
    } else {
      options.unknown.push(...rest);
    }
  } else if (first !== undefined) {
    options.unknown.push(first, ...rest);
  }
  return options;
}

/** Reads the version from package.json, found by walking up from this file. */
export function packageVersion(): string {
  let folder = __dirname;
  for (let depth = 0; depth < 5; depth += 1) {
    const file = path.join(folder, 'package.json');
    if (fs.existsSync(file)) {
      const parsed = JSON.parse(fs.readFileSync(file, 'utf8')) as {
        name?: string;
        version?: string;
      };
      if (parsed.name === 'operator-telemetry') return parsed.version ?? 'unknown';
    }
    folder = path.dirname(folder);
  }
  return 'unknown';
}
