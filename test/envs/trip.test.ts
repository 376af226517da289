// Trip-planning family: deterministic generation, tools, verifier (solution 1, wrong answers < 1),
// and `env validate` on a generated environment.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateTrip } from '../../src/envs/families/trip/family.js';
import { registerBuiltinFamilies } from '../../src/envs/families/index.js';
import { getFamily } from '../../src/envs/families/registry.js';
import { TripIndex, solveTrip } from '../../src/envs/families/trip/solver.js';
import { generateWorld } from '../../src/envs/families/trip/world.js';
import type { TripAnswer, TripParams } from '../../src/envs/families/trip/constraints.js';
import { loadEnvironment, listTools, type Environment } from '../../src/envs/load.js';
import { Episode } from '../../src/envs/episode.js';
import { dbFingerprint } from '../../src/envs/db-state.js';
import { validateEnvironment } from '../../src/envs/validate.js';
import { scratchDir, verifyAnswer } from './family-helpers.js';
import { FamilyError } from '../../src/envs/errors.js';

const SEED = 11;
const root = scratchDir('trip-test-');

function gen(name: string, seed: number, tasks: number): string {
  const out = join(root, name);
  generateTrip({ seed, tasks, outDir: out });
  return out;
}

const envDir = gen('main', SEED, 5);
const env: Environment = loadEnvironment(envDir);

const score = (taskId: string, answer: unknown) => verifyAnswer(env, taskId, answer);

function files(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (rel: string) => {
    for (const e of readdirSync(join(dir, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(r);
      else if (e.name !== 'db.sqlite') out.set(r, readFileSync(join(dir, r), 'utf8'));
    }
  };
  walk('');
  return out;
}

test('generation is deterministic in the seed and varies across seeds', () => {
  const again = gen('again', SEED, 5);
  assert.deepEqual(files(again), files(envDir));
  assert.equal(dbFingerprint(join(again, 'db.sqlite')), dbFingerprint(join(envDir, 'db.sqlite')));
  const other = gen('other', SEED + 1, 5);
  assert.notEqual(dbFingerprint(join(other, 'db.sqlite')), dbFingerprint(join(envDir, 'db.sqlite')));
  assert.throws(() => generateTrip({ seed: 1, tasks: 1, outDir: envDir }), (e: unknown) => e instanceof FamilyError && /not empty/.test(e.message));
});

test('the family is registered and makes a few hundred distinct tasks quickly', () => {
  registerBuiltinFamilies();
  registerBuiltinFamilies();
  assert.equal(getFamily('trip').name, 'trip');
  const t0 = performance.now();
  const r = getFamily('trip').generate({ seed: 3, tasks: 300, outDir: join(root, 'big') });
  assert.ok(performance.now() - t0 < 20_000);
  assert.equal((r as { tasks: number }).tasks, 300);
  const tasks = readdirSync(join(root, 'big', 'tasks')).map((f) => JSON.parse(readFileSync(join(root, 'big', 'tasks', f), 'utf8')) as { params: TripParams; difficulty: string });
  assert.equal(new Set(tasks.map((t) => JSON.stringify(t.params))).size, 300);
  const byDifficulty = (d: string) => tasks.filter((t) => t.difficulty === d).length;
  assert.deepEqual([byDifficulty('easy'), byDifficulty('medium'), byDifficulty('hard')], [60, 120, 120]);
  // the paper's shape: medium tasks are 3 days with the tiered budget on day 2
  for (const t of tasks.filter((x) => x.difficulty === 'medium')) {
    assert.equal(t.params.days, 3);
    assert.ok(t.params.constraints.some((c) => c.type === 'tiered_budget' && c.day === 2));
  }
  assert.ok(tasks.every((t) => t.difficulty !== 'hard' || t.params.constraints.some((c) => c.type === 'max_total_cost')));
});

test('15 query tools plus submit_result, answering from the database', async () => {
  const tools = listTools(env);
  assert.equal(tools.length, 16);
  assert.equal(tools[15]!.name, 'submit_result');
  for (const name of ['get_all_cities', 'get_infos_by_city', 'get_transport', 'get_weather_by_city_date', 'get_hotels_by_price_range']) {
    assert.ok(tools.some((t) => t.name === name), name);
  }
  const world = generateWorld(SEED);
  const ep = Episode.open(env);
  try {
    const cities = (await ep.callTool('get_all_cities', {})).result as Array<{ name: string }>;
    assert.deepEqual(cities.map((c) => c.name), world.cities.map((c) => c.name).sort());
    const c0 = world.cities[0]!;
    const hotels = (await ep.callTool('get_hotels_by_price_range', { city: c0.name, min_price: 500, max_price: 799 })).result as Array<{ price_per_night: number }>;
    const expected = world.hotels.filter((h) => h.cityId === c0.id && h.price >= 500 && h.price <= 799);
    assert.equal(hotels.length, expected.length);
    assert.ok(hotels.length > 0 && hotels.every((h) => h.price_per_night >= 500 && h.price_per_night <= 799));
    const w = world.weather.find((x) => x.cityId === c0.id && x.date === '2025-10-03')!;
    assert.equal(((await ep.callTool('get_weather_by_city_date', { city: c0.name, date: '2025-10-03' })).result as { condition: string }).condition, w.condition);
    const legs = (await ep.callTool('get_transport_from_city', { from_city: c0.name, date: '2025-10-02' })).result as Array<{ code: string }>;
    assert.equal(legs.length, world.transport.filter((t) => t.fromId === c0.id && t.date === '2025-10-02').length);
    const bad = await ep.callTool('get_all_hotels_by_city', { city: 'Atlantis' });
    assert.equal(bad.ok, false);
    assert.match(bad.error!, /unknown city 'Atlantis'; get_all_cities lists the cities/);
  } finally {
    ep.close();
  }
});

test("the generator's solver answer scores 1 and the verifier agrees on its cost", async () => {
  const ix = new TripIndex(generateWorld(SEED));
  for (const t of env.tasks) {
    const sol = solveTrip(ix, t.params as unknown as TripParams)!;
    const v = await score(t.id, sol.answer);
    assert.equal(v.score, 1, `${t.id}: ${v.reason}`);
    assert.match(v.reason, new RegExp(`total cost ${sol.cost}$`));
  }
});

test('wrong answers score below 1 with a reason', async () => {
  const world = generateWorld(SEED);
  const ix = new TripIndex(world);
  const task = env.tasks.find((t) => (t.params as unknown as TripParams).constraints.some((c) => c.type === 'tiered_budget'))!;
  const p = task.params as unknown as TripParams;
  const good = solveTrip(ix, p)!.answer;
  const mutate = (f: (a: TripAnswer) => void) => {
    const a = structuredClone(good);
    f(a);
    return a;
  };
  const tieredDay = p.constraints.find((c) => c.type === 'tiered_budget')!.day as number;
  const cityId = (name: string) => world.cities.find((c) => c.name === name)!.id;
  const cheapHotel = world.hotels.find((h) => h.cityId === cityId(good.itinerary[tieredDay - 1]!.city) && h.price < 200)!;
  const cases: Array<[string, unknown, RegExp]> = [
    ['cheap hotel on a tiered day', mutate((a) => (a.itinerary[tieredDay - 1]!.hotel = cheapHotel.name)), /tiered budget: hotel under 200/],
    ['unknown transport', mutate((a) => (a.itinerary[0]!.transport = 'ZZ999')), /no service ZZ999/],
    ['wrong date', mutate((a) => (a.itinerary[1]!.date = '2030-01-01')), /date 2030-01-01 should be/],
    ['hotel from another city', mutate((a) => (a.itinerary[0]!.hotel = a.itinerary[1]!.hotel)), /hotel .* is not in/],
    ['same restaurant twice', mutate((a) => (a.itinerary[0]!.evening_restaurant = a.itinerary[0]!.afternoon_restaurant)), /appears twice/],
    ['a day missing', mutate((a) => a.itinerary.pop()), /itinerary has \d days, the task asks for/],
    ['origin revisited', mutate((a) => (a.itinerary[0]!.city = p.origin)), /returns to the origin/],
    ['not an itinerary', { plan: 'go somewhere' }, /answer must be an object with an itinerary list/],
    ['field of the wrong type', mutate((a) => ((a.itinerary[0] as unknown as Record<string, unknown>).hotel = 42)), /must have string fields/],
  ];
  for (const [what, answer, reason] of cases) {
    const v = await score(task.id, answer);
    assert.ok(v.score < 1, `${what} was accepted`);
    assert.equal(v.error, undefined, `${what}: verifier crashed: ${v.error}`);
    assert.match(v.reason, reason, what);
  }
  const budgeted = env.tasks.find((t) => (t.params as unknown as TripParams).constraints.some((c) => c.type === 'max_total_cost'));
  assert.ok(budgeted, 'a generated task with a total budget');
  const bp = budgeted.params as unknown as TripParams;
  const over = structuredClone(solveTrip(ix, bp)!.answer);
  // The budget is within a few percent of the optimum: taking the priciest hotel everywhere breaks it
  // (or a rating/tier rule), and the verifier says which.
  for (const d of over.itinerary) {
    d.hotel = world.hotels.filter((h) => h.cityId === cityId(d.city)).sort((a, b) => b.price - a.price)[0]!.name;
  }
  const v = await score(budgeted.id, over);
  assert.ok(v.score < 1);
  assert.match(v.reason, /exceeds the budget|tiered budget|rated/);
});

test('env validate passes on a generated environment', async () => {
  const ix = new TripIndex(generateWorld(SEED));
  const report = await validateEnvironment(env, { jobs: 2, taskIds: env.tasks.slice(0, 2).map((t) => t.id) });
  assert.equal(report.ok, true, JSON.stringify(report.tasks.filter((t) => !t.ok), null, 1));
  for (const t of report.tasks) {
    assert.equal(t.reference.verdict!.score, 1);
    // the Python reference solution finds the same optimum as the generator's TypeScript solver
    const optimum = solveTrip(ix, env.taskById.get(t.taskId)!.params as unknown as TripParams)!.cost;
    assert.match(t.reference.verdict!.reason, new RegExp(`total cost ${optimum}$`));
    assert.ok(t.perturbations.rejected >= 2);
    assert.ok(t.toolCalls > 3);
  }
  assert.equal(report.toolExamples.length, 15);
  assert.deepEqual(report.unexercisedTools, []);
});
