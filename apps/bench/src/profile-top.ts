#!/usr/bin/env node
import fs from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";

/**
 * Summarises a V8 .cpuprofile (node --cpu-prof): self time by function and by package, so
 * that "where does the time go" fits in a table.
 *
 *   node apps/bench/dist/profile-top.js <file.cpuprofile> [--top 25] [--skip-ms 3000]
 *
 * --skip-ms leaves out the first milliseconds of the profile (the server's start-up:
 * module loading and migrations), so that what remains is the load.
 */

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface SelfTime {
  name: string;
  ms: number;
  percent: number;
}

/** Where a script lives: a package name, node's internals, or the repository's own code. */
export function ownerOf(url: string): string {
  if (url === "") return "(native / V8)";
  if (url.startsWith("node:")) return "node: internals";
  const nm = url.lastIndexOf("/node_modules/");
  if (nm >= 0) {
    const rest = url.slice(nm + "/node_modules/".length).split("/");
    return rest[0]?.startsWith("@") ? `${rest[0]}/${rest[1]}` : (rest[0] ?? url);
  }
  const m = /\/(apps|packages)\/([^/]+)\//.exec(url);
  return m ? `${m[1]}/${m[2]}` : url;
}

export function summarizeProfile(
  profile: CpuProfile,
  top = 25,
  skipMs = 0,
): { totalMs: number; functions: SelfTime[]; owners: SelfTime[] } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  let elapsedUs = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!;
    const delta = profile.timeDeltas[i] ?? 0;
    elapsedUs += delta;
    if (elapsedUs < skipMs * 1000) continue;
    selfUs.set(id, (selfUs.get(id) ?? 0) + delta);
  }
  const fn = new Map<string, number>();
  const owner = new Map<string, number>();
  let total = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (!node) continue;
    const cf = node.callFrame;
    total += us;
    const file = cf.url ? `${path.basename(cf.url)}:${cf.lineNumber + 1}` : "";
    const key = `${cf.functionName || "(anonymous)"}${file ? ` ${ownerOf(cf.url)} ${file}` : ""}`;
    fn.set(key, (fn.get(key) ?? 0) + us);
    // (idle) and (program) are V8 pseudo-frames: waiting, and work outside JavaScript.
    const o = cf.functionName.startsWith("(") && !cf.url ? cf.functionName : ownerOf(cf.url);
    owner.set(o, (owner.get(o) ?? 0) + us);
  }
  const rank = (m: Map<string, number>) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => ({ name, ms: us / 1000, percent: total > 0 ? (us / total) * 100 : 0 }));
  return { totalMs: total / 1000, functions: rank(fn), owners: rank(owner) };
}

function main(): void {
  const args = process.argv.slice(2);
  const file = args.find((a, i) => !a.startsWith("--") && args[i - 1] !== "--top" && args[i - 1] !== "--skip-ms");
  const topIdx = args.indexOf("--top");
  const top = topIdx >= 0 ? Number(args[topIdx + 1]) : 25;
  const skipIdx = args.indexOf("--skip-ms");
  const skipMs = skipIdx >= 0 ? Number(args[skipIdx + 1]) : 0;
  if (!file) {
    process.stderr.write("usage: profile-top <file.cpuprofile> [--top N] [--skip-ms N]\n");
    process.exit(2);
  }
  const profile = JSON.parse(fs.readFileSync(file, "utf8")) as CpuProfile;
  const s = summarizeProfile(profile, top, skipMs);
  const row = (t: SelfTime) => `| ${t.name.replace(/\|/g, "\\|")} | ${t.ms.toFixed(0)} | ${t.percent.toFixed(1)} |`;
  process.stdout.write(`Profile: ${s.totalMs.toFixed(0)} ms sampled\n\n`);
  process.stdout.write(`| by package | self ms | % |\n|---|---:|---:|\n${s.owners.map(row).join("\n")}\n\n`);
  process.stdout.write(`| function | self ms | % |\n|---|---:|---:|\n${s.functions.map(row).join("\n")}\n`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) main();
