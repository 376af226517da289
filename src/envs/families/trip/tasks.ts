// Samples trip tasks of a given difficulty and keeps only feasible ones. The total budget, when a task
// has one, is set just above the cheapest feasible itinerary, which makes it binding: an agent has to
// optimise across days instead of picking any valid combination.
import { Rng } from '../../rng.js';
import { ATTRACTION_CATEGORIES, CUISINES } from './names.js';
import { solveTrip, type TripIndex, type TripSolution } from './solver.js';
import { WINDOW_DAYS, type World } from './world.js';
import type { TripConstraint, TripParams } from './constraints.js';

export type TripDifficulty = 'easy' | 'medium' | 'hard';

interface Shape {
  days: () => number;
  tieredDays: (days: number) => number[];
  extras: () => number;
  /** Budget slack over the optimum, or undefined for no budget. */
  slack: () => number | undefined;
}

function shapes(rng: Rng): Record<TripDifficulty, Shape> {
  return {
    easy: { days: () => 2, tieredDays: () => [], extras: () => rng.int(1, 2), slack: () => undefined },
    // The paper's example: 3 days with the tiered budget on day 2.
    medium: { days: () => 3, tieredDays: () => [2], extras: () => 2, slack: () => (rng.chance(0.5) ? 0.15 + rng.next() * 0.15 : undefined) },
    hard: {
      days: () => rng.int(3, 4),
      tieredDays: (d) => [2, rng.pick(Array.from({ length: d }, (_, i) => i + 1).filter((x) => x !== 2))],
      extras: () => rng.int(2, 3),
      slack: () => 0.02 + rng.next() * 0.06,
    },
  };
}

function extraConstraint(rng: Rng, world: World, p: { origin: string; days: number }, kind: string): TripConstraint {
  switch (kind) {
    case 'min_hotel_rating':
      return { type: 'min_hotel_rating', min: rng.pick([3.5, 3.8, 4.0, 4.2]) };
    case 'rain_indoor':
      return { type: 'rain_indoor' };
    case 'transport_mode':
      return { type: 'transport_mode', mode: rng.pick(['train', 'train', 'flight', 'bus']) };
    case 'evening_cuisine':
      return { type: 'evening_cuisine', day: rng.int(1, p.days), cuisine: rng.pick(CUISINES) };
    case 'include_attraction_category':
      return { type: 'include_attraction_category', category: rng.pick(ATTRACTION_CATEGORIES) };
    default:
      return { type: 'must_visit_city', city: rng.pick(world.cities.filter((c) => c.name !== p.origin)).name };
  }
}

const EXTRA_KINDS = ['min_hotel_rating', 'rain_indoor', 'transport_mode', 'evening_cuisine', 'include_attraction_category', 'must_visit_city'];

export interface SampledTask {
  params: TripParams;
  solution: TripSolution;
}

/** Draws tasks until one is feasible (at most `attempts`); undefined if none was. */
export function sampleTripTask(rng: Rng, ix: TripIndex, difficulty: TripDifficulty, attempts = 200): SampledTask | undefined {
  const shape = shapes(rng)[difficulty];
  for (let i = 0; i < attempts; i++) {
    const days = shape.days();
    const origin = rng.pick(ix.world.cities).name;
    const startDate = ix.world.dates[rng.int(0, WINDOW_DAYS - days)]!;
    const constraints: TripConstraint[] = shape.tieredDays(days).map((day) => ({ type: 'tiered_budget', day }));
    for (const kind of rng.sample(EXTRA_KINDS, shape.extras())) constraints.push(extraConstraint(rng, ix.world, { origin, days }, kind));
    const params: TripParams = { origin, startDate, days, constraints };
    const best = solveTrip(ix, params);
    if (!best) continue;
    const slack = shape.slack();
    if (slack !== undefined) {
      params.constraints.push({ type: 'max_total_cost', budget: Math.ceil((best.cost * (1 + slack)) / 10) * 10 });
    }
    return { params, solution: best };
  }
  return undefined;
}
