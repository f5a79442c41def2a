/**
 * Headless Chromium (Debian's `chromium`, installed by scripts/ensure-deps.sh) from its command
 * line: the DOM of a page after its scripts ran, and a screenshot. Flags for this machine: no
 * sandbox as root, no GPU, and no background networking (the network is closed), a fresh profile.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

export const CHROMIUM = '/usr/bin/chromium';

const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--hide-scrollbars',
  // Virtual time: the page's scripts and requests get this long before the DOM or picture is taken.
  '--virtual-time-budget=20000',
];

async function chromium(args: string[], window: { width: number; height: number }): Promise<string> {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: run scripts/ensure-deps.sh (installs Debian's chromium package)`);
  const profile = mkdtempSync(path.join(os.tmpdir(), 'timeshare-chromium-'));
  try {
    const { stdout } = await promisify(execFile)(CHROMIUM, [...FLAGS, `--user-data-dir=${profile}`, `--window-size=${window.width},${window.height}`, ...args], {
      maxBuffer: 64 * 1024 * 1024,
      timeout: 180_000,
    });
    return stdout;
  } finally {
    rmSync(profile, { recursive: true, force: true });
  }
}

/** The page's DOM once its scripts have run. */
export function renderedDom(url: string): Promise<string> {
  return chromium(['--dump-dom', url], { width: 1400, height: 1000 });
}

/** Writes a PNG of the page to `file`. */
export async function screenshot(url: string, file: string, window = { width: 1400, height: 1000 }): Promise<void> {
  await chromium([`--screenshot=${file}`, url], window);
  if (!existsSync(file)) throw new Error(`chromium wrote no screenshot of ${url} to ${file}`);
}
