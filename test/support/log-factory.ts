import fs from 'node:fs';
import path from 'node:path';
import { Wallet, getAddress, hexlify } from 'ethers';

/**
 * Writes energy logs the way the orchestrator does (`JSON.stringify(log, null, 2)`, whole
 * file rewritten per stage), for tests and benchmarks that need many of them.
 */

export interface Stage {
  jobId: string;
  stageName: string;
  agent: string;
  timestamp: string;
  cpuTimeMs: number;
  gpuTimeMs: number;
  wallTimeMs: number;
  energyScore: number;
  efficiencyScore: number;
  algorithmicComplexity: string;
  estimatedOperations: number;
  inputSize: number;
  outputSize: number;
  success: boolean;
  metadata: Record<string, unknown>;
}

export interface EnergyLogFile {
  jobId: string;
  agent: string;
  stages: Stage[];
  summary: Record<string, unknown>;
}

/** A small deterministic random generator (mulberry32), so generated data repeats per seed. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Deterministic checksummed agent addresses. */
export function agentAddresses(count: number, seed = 1): string[] {
  const random = seededRandom(seed);
  return Array.from({ length: count }, () => {
    const bytes = new Uint8Array(20).map(() => Math.floor(random() * 256));
    return getAddress(hexlify(bytes));
  });
}

export function randomAgent(): string {
  return Wallet.createRandom().address;
}

export function makeStage(
  agent: string,
  jobId: string,
  index: number,
  timeMs: number,
  random: () => number,
): Stage {
  const cpuTimeMs = Math.round(random() * 50_000) / 1000;
  return {
    jobId,
    stageName: ['plan', 'fetch-context', 'execute', 'verify', 'report'][index % 5] ?? 'stage',
    agent,
    timestamp: new Date(timeMs).toISOString(),
    cpuTimeMs,
    gpuTimeMs: 0,
    wallTimeMs: cpuTimeMs * 1.1,
    energyScore: cpuTimeMs,
    efficiencyScore: Math.round(random() * 100_000_000) / 1_000_000,
    algorithmicComplexity: 'O(n)',
    estimatedOperations: Math.round(cpuTimeMs * 1000),
    inputSize: 200 + index * 50,
    outputSize: 100 + index * 100,
    success: true,
    metadata: { attempt: 1, stage: index },
  };
}

/** Recomputes the summary from the stages, as the orchestrator does after each stage. */
export function summarise(stages: Stage[]): Record<string, unknown> {
  const totalCpuTimeMs = stages.reduce((sum, stage) => sum + stage.cpuTimeMs, 0);
  const totalGpuTimeMs = stages.reduce((sum, stage) => sum + stage.gpuTimeMs, 0);
  const totalWallTimeMs = stages.reduce((sum, stage) => sum + stage.wallTimeMs, 0);
  const efficiency = stages.reduce((sum, stage) => sum + stage.efficiencyScore, 0) / stages.length;
  return {
    totalCpuTimeMs,
    totalGpuTimeMs,
    totalWallTimeMs,
    energyScore: totalCpuTimeMs + totalGpuTimeMs,
    efficiencyScore: efficiency,
    averageEfficiency: efficiency,
    complexity: 'O(n)',
    successRate: 1,
    runs: stages.length,
    lastUpdated: stages[stages.length - 1]?.timestamp,
  };
}

export function logPath(root: string, agent: string, jobId: string): string {
  return path.join(root, agent.replace(/[^a-zA-Z0-9_-]+/g, '_'), `${jobId}.json`);
}

/** Writes a job log with `stageCount` stages, the last one at `timeMs`. */
export function writeJobLog(
  root: string,
  agent: string,
  jobId: string,
  stageCount: number,
  timeMs: number,
  random: () => number,
): string {
  const stages = Array.from({ length: stageCount }, (_, index) =>
    makeStage(agent, jobId, index, timeMs - (stageCount - 1 - index) * 10, random),
  );
  const log: EnergyLogFile = { jobId, agent, stages, summary: summarise(stages) };
  const file = logPath(root, agent, jobId);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(log, null, 2));
  return file;
}

/** Adds one stage at `timeMs` to an existing log and rewrites it in place. */
export function addStage(file: string, timeMs: number, random: () => number): void {
  const log = JSON.parse(fs.readFileSync(file, 'utf8')) as EnergyLogFile;
  log.stages.push(makeStage(log.agent, log.jobId, log.stages.length, timeMs, random));
  log.summary = summarise(log.stages);
  fs.writeFileSync(file, JSON.stringify(log, null, 2));
}
