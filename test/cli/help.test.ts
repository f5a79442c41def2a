/**
 * The CLI's help tells the truth, and answering it loads none of what the commands need to run:
 * `--help` and `check-config` never load the Temporal SDK (docs/benchmarks.md, CLI start-up).
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { buildProgram } from '../../src/cli/main';

const ROOT = path.join(__dirname, '..', '..');

/** Every command that has an action, with its full name ("worker gpu-node"). */
function leafCommands(command: Command, prefix: string[] = []): { name: string; command: Command }[] {
  return command.commands.flatMap((sub) => {
    const name = [...prefix, sub.name()];
    return sub.commands.length > 0 ? leafCommands(sub, name) : [{ name: name.join(' '), command: sub }];
  });
}

const takesConfig = (command: Command): boolean => command.registeredArguments.some((argument) => argument.name() === 'config');

describe('timeshare --help', () => {
  const commands = leafCommands(buildProgram());

  it('covers the commands the README documents', () => {
    expect(commands.map((entry) => entry.name)).toEqual(
      expect.arrayContaining(['dev', 'start', 'status', 'pause', 'worker orchestrator', 'worker gpu-node', 'timeline', 'codec-server', 'check-config', 'bench']),
    );
  });

  it.each(commands.map((entry) => [entry.name, entry.command] as const))('%s: names the config as a default only if it takes one', (name, command) => {
    const fromConfig = command.options.filter((option) => /default: config/.test(option.description));
    if (takesConfig(command)) {
      // A command with a config reads its connection settings there first, and says so.
      const address = command.options.find((option) => option.long === '--address');
      if (address !== undefined) expect(address.description, name).toContain('default: config');
    } else {
      expect(
        fromConfig.map((option) => `${option.long}: ${option.description}`),
        name,
      ).toEqual([]);
    }
  });

  it('gives the connection defaults a command without a config really uses', () => {
    const status = commands.find((entry) => entry.name === 'status')?.command;
    const address = status?.options.find((option) => option.long === '--address');
    expect(address?.description).toBe('Temporal front-end address (default: $TEMPORAL_ADDRESS, localhost:7233)');
  });
});

describe('what the CLI loads', () => {
  /** The @temporalio packages a run of the compiled CLI with `args` has loaded when it ends. */
  async function temporalModulesLoadedBy(args: string[]): Promise<string[]> {
    const script = [
      `const { main } = require(${JSON.stringify(path.join(ROOT, 'dist', 'src', 'cli', 'main.js'))});`,
      'main(process.argv.slice(1)).then((code) => {',
      "  const loaded = [...new Set(Object.keys(require.cache).map((file) => /node_modules\\/(@temporalio\\/[^/]+)/.exec(file)?.[1]).filter(Boolean))];",
      "  process.stderr.write('LOADED ' + JSON.stringify(loaded) + '\\n');",
      '  process.exitCode = code;',
      '});',
    ].join('\n');
    // A command that fails (no server) exits non-zero: its stderr still has the line.
    const stderr = await promisify(execFile)(process.execPath, ['-e', script, '--', ...args], { cwd: ROOT, timeout: 60_000 }).then(
      (done) => done.stderr,
      (error: { stderr?: string }) => error.stderr ?? '',
    );
    const line = stderr.split('\n').find((text) => text.startsWith('LOADED '));
    if (line === undefined) throw new Error(`no LOADED line in: ${stderr}`);
    return JSON.parse(line.slice('LOADED '.length)) as string[];
  }

  it('--help, a command --help and check-config load no Temporal SDK', async () => {
    expect(await temporalModulesLoadedBy(['--help'])).toEqual([]);
    expect(await temporalModulesLoadedBy(['worker', 'orchestrator', '--help'])).toEqual([]);
    expect(await temporalModulesLoadedBy(['check-config', path.join(ROOT, 'examples', 'multiplexed.yaml')])).toEqual([]);
  });

  it('a command that talks to a server loads the client, not the worker', async () => {
    const loaded = await temporalModulesLoadedBy(['status', 'no-run', '--address', '127.0.0.1:1', '--server-wait', '0']);
    expect(loaded).toContain('@temporalio/client');
    expect(loaded).not.toContain('@temporalio/worker');
  });
});
