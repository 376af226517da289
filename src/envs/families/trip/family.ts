// The trip-planning family (general agent, paper §3.2.3): writes a complete environment directory
// (manifest, SQLite world, 15 query tools + submit_result, tasks, reference solution, verifier) from
// a seed, offline.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { FamilyError } from '../../errors.js';
import { FORMAT_VERSION, type Manifest } from '../../format.js';
import { Rng } from '../../rng.js';
import { type EnvFamily, type GenerateOptions, type GenerateResult, checkGenerateOptions, writeEnvFile } from '../registry.js';
import { renderPrompt } from './constraints.js';
import { DB_HELPER, SOLUTION, SUBMIT_TOOL, VERIFIER, toolSource, tripTools } from './programs.js';
import { TripIndex } from './solver.js';
import { sampleTripTask, type TripDifficulty } from './tasks.js';
import { addDays, generateWorld, writeWorldDb } from './world.js';

export const TRIP_MAX_TASKS = 2000;

/** Difficulty mix: one easy, two medium, two hard in every five tasks. */
const MIX: TripDifficulty[] = ['easy', 'medium', 'hard', 'medium', 'hard'];

export function generateTrip(opts: GenerateOptions): GenerateResult {
  const dir = checkGenerateOptions(opts, TRIP_MAX_TASKS);
  mkdirSync(dir, { recursive: true });

  const world = generateWorld(opts.seed);
  const ix = new TripIndex(world);
  const envId = `trip-s${opts.seed}`;
  const manifest: Manifest = {
    formatVersion: FORMAT_VERSION,
    id: envId,
    family: 'trip',
    description:
      'Trip planning over a synthetic database of cities, hotels, restaurants, attractions, transport and weather: ' +
      'multi-day itineraries under tiered budget, rating, weather and transport constraints.',
    provenance: { source: 'dsv32 env generate trip (offline, deterministic)', seed: opts.seed },
    difficulty: 'mixed',
    version: '1.0.0',
    submitTool: SUBMIT_TOOL.name,
    toolLimits: { timeoutMs: 10_000, memoryMb: 256 },
  };
  writeEnvFile(dir, 'manifest.json', JSON.stringify(manifest, null, 2) + '\n');
  writeWorldDb(world, join(dir, 'db.sqlite'));

  const first = world.cities[0]!;
  const ex = {
    city: first.name,
    other: world.cities[1]!.name,
    province: first.province,
    date: world.dates[0]!,
    hotel: world.hotels.find((h) => h.cityId === first.id)!.name,
    restaurant: world.restaurants.find((r) => r.cityId === first.id)!.name,
    attraction: world.attractions.find((a) => a.cityId === first.id)!.name,
    cuisine: world.restaurants.find((r) => r.cityId === first.id)!.cuisine,
  };
  const tools = tripTools(ex);
  writeEnvFile(dir, 'tools/_db.py', DB_HELPER);
  for (const t of tools) {
    writeEnvFile(dir, `tools/${t.name}.py`, toolSource(t));
    writeEnvFile(dir, `tools/${t.name}.schema.json`, JSON.stringify({ name: t.name, description: t.description, parameters: t.parameters, examples: t.examples }, null, 2) + '\n');
  }
  writeEnvFile(dir, `tools/${SUBMIT_TOOL.name}.schema.json`, JSON.stringify(SUBMIT_TOOL, null, 2) + '\n');
  writeEnvFile(dir, 'solutions/solve_trip.py', SOLUTION);
  writeEnvFile(dir, 'verifiers/verify_trip.py', VERIFIER);

  const rng = new Rng(opts.seed).fork('tasks');
  const seen = new Set<string>();
  let made = 0;
  for (let i = 0; made < opts.tasks; i++) {
    if (i > opts.tasks * 20) throw new FamilyError(`could only make ${made} distinct feasible trip tasks for seed ${opts.seed}`);
    const difficulty = MIX[made % MIX.length]!;
    const s = sampleTripTask(rng, ix, difficulty);
    if (!s) continue;
    const key = JSON.stringify(s.params);
    if (seen.has(key)) continue;
    seen.add(key);
    const id = `trip-${String(made).padStart(4, '0')}`;
    const task = {
      id,
      prompt: renderPrompt(s.params, addDays(s.params.startDate, s.params.days - 1)),
      difficulty,
      params: s.params,
      solution: { program: 'solutions/solve_trip.py' },
      verifier: { program: 'verifiers/verify_trip.py' },
    };
    writeEnvFile(dir, `tasks/${id}.json`, JSON.stringify(task, null, 2) + '\n');
    made++;
  }
  return { dir, envId, tasks: made, tools: tools.length + 1 };
}

export const tripFamily: EnvFamily = {
  name: 'trip',
  description: 'general agent: multi-day trip planning with tiered budget and rating constraints (15 query tools + submit_result)',
  maxTasks: TRIP_MAX_TASKS,
  generate: generateTrip,
};
