// Exact minimum-cost solver for trip tasks, used by the generator to keep only feasible tasks and to
// set tight total budgets. Depth-first over city sequences (cities never repeat, so depth <= days);
// each day independently takes its cheapest valid (hotel, restaurant, restaurant, attraction) combo,
// plus the cheapest combo whose attraction has the required category when the task asks for one, so
// branching over those two choices per day keeps the search exact. Branch-and-bound on cost.
import { RAINY } from './names.js';
import { addDays, type Attraction, type Hotel, type Restaurant, type Transport, type World } from './world.js';
import { tierViolation, type DayPlan, type TripAnswer, type TripParams } from './constraints.js';

interface Combo {
  cost: number;
  hotel: Hotel;
  r1: Restaurant;
  r2: Restaurant;
  attraction: Attraction;
}

export interface TripSolution {
  answer: TripAnswer;
  cost: number;
}

const byName = <T extends { name: string }>(a: T, b: T) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

export class TripIndex {
  readonly cityByName = new Map<string, number>();
  readonly cityName = new Map<number, string>();
  readonly hotels = new Map<number, Hotel[]>();
  readonly restaurants = new Map<number, Restaurant[]>();
  readonly attractions = new Map<number, Attraction[]>();
  readonly legs = new Map<string, Transport[]>();
  readonly weather = new Map<string, string>();

  constructor(readonly world: World) {
    for (const c of world.cities) {
      this.cityByName.set(c.name, c.id);
      this.cityName.set(c.id, c.name);
    }
    const group = <T extends { cityId: number; name: string }>(xs: T[], m: Map<number, T[]>) => {
      for (const x of xs) m.set(x.cityId, [...(m.get(x.cityId) ?? []), x]);
      for (const v of m.values()) v.sort(byName);
    };
    group(world.hotels, this.hotels);
    group(world.restaurants, this.restaurants);
    group(world.attractions, this.attractions);
    for (const t of world.transport) {
      const k = `${t.fromId}|${t.date}`;
      this.legs.set(k, [...(this.legs.get(k) ?? []), t]);
    }
    for (const w of world.weather) this.weather.set(`${w.cityId}|${w.date}`, w.condition);
  }
}

export function solveTrip(ix: TripIndex, p: TripParams): TripSolution | undefined {
  const originId = ix.cityByName.get(p.origin);
  if (originId === undefined) return undefined;
  const tiered = new Set(p.constraints.flatMap((c) => (c.type === 'tiered_budget' ? [c.day] : [])));
  let minRating = -Infinity;
  let mode: string | undefined;
  let rainIndoor = false;
  let budget = Infinity;
  let category: string | undefined;
  let mustCity: number | undefined;
  const cuisineByDay = new Map<number, string>();
  for (const c of p.constraints) {
    if (c.type === 'min_hotel_rating') minRating = Math.max(minRating, c.min);
    else if (c.type === 'transport_mode') mode = c.mode;
    else if (c.type === 'rain_indoor') rainIndoor = true;
    else if (c.type === 'max_total_cost') budget = Math.min(budget, c.budget);
    else if (c.type === 'include_attraction_category') category = c.category;
    else if (c.type === 'must_visit_city') mustCity = ix.cityByName.get(c.city) ?? -1;
    else if (c.type === 'evening_cuisine') cuisineByDay.set(c.day, c.cuisine);
  }

  const memo = new Map<string, { any?: Combo; cat?: Combo }>();
  const dayCombos = (cityId: number, day: number, date: string) => {
    const key = `${cityId}|${day}`;
    const hit = memo.get(key);
    if (hit) return hit;
    const res: { any?: Combo; cat?: Combo } = {};
    const wet = RAINY.has(ix.weather.get(`${cityId}|${date}`) ?? '');
    const rs = ix.restaurants.get(cityId) ?? [];
    const cuisine = cuisineByDay.get(day);
    for (const hotel of ix.hotels.get(cityId) ?? []) {
      if (hotel.rating < minRating) continue;
      for (const r1 of rs) {
        for (const r2 of rs) {
          if (r1 === r2 || (cuisine !== undefined && r2.cuisine !== cuisine)) continue;
          for (const a of ix.attractions.get(cityId) ?? []) {
            if (rainIndoor && wet && !a.indoor) continue;
            if (tiered.has(day) && tierViolation(hotel.price, r1, r2, a.ticket) !== undefined) continue;
            const cost = hotel.price + r1.price + r2.price + a.ticket;
            const combo = { cost, hotel, r1, r2, attraction: a };
            if (!res.any || cost < res.any.cost) res.any = combo;
            if (category !== undefined && a.category === category && (!res.cat || cost < res.cat.cost)) res.cat = combo;
          }
        }
      }
    }
    memo.set(key, res);
    return res;
  };

  let best: { cost: number; plan: DayPlan[] } | undefined;
  const plan: DayPlan[] = [];
  const used = new Set<number>([originId]);
  const dfs = (day: number, from: number, cost: number, catDone: boolean, mustDone: boolean) => {
    if (best && cost >= best.cost) return;
    if (day > p.days) {
      if ((category !== undefined && !catDone) || (mustCity !== undefined && !mustDone) || cost > budget) return;
      best = { cost, plan: plan.map((d) => ({ ...d })) };
      return;
    }
    const date = addDays(p.startDate, day - 1);
    const cheapest = new Map<number, Transport>();
    for (const t of ix.legs.get(`${from}|${date}`) ?? []) {
      if (mode !== undefined && t.mode !== mode) continue;
      const cur = cheapest.get(t.toId);
      if (!cur || t.price < cur.price || (t.price === cur.price && t.code < cur.code)) cheapest.set(t.toId, t);
    }
    const dests = [...cheapest.keys()].sort((a, b) => ix.cityName.get(a)!.localeCompare(ix.cityName.get(b)!));
    for (const to of dests) {
      if (used.has(to)) continue;
      const leg = cheapest.get(to)!;
      const opts = dayCombos(to, day, date);
      const choices = [opts.any, opts.cat].filter((c, i, xs): c is Combo => c !== undefined && xs.indexOf(c) === i);
      for (const c of choices) {
        used.add(to);
        plan.push({
          date,
          city: ix.cityName.get(to)!,
          transport: leg.code,
          hotel: c.hotel.name,
          afternoon_restaurant: c.r1.name,
          afternoon_attraction: c.attraction.name,
          evening_restaurant: c.r2.name,
        });
        dfs(day + 1, to, cost + leg.price + c.cost, catDone || c.attraction.category === category, mustDone || to === mustCity);
        plan.pop();
        used.delete(to);
      }
    }
  };
  dfs(1, originId, 0, false, false);
  return best ? { answer: { itinerary: best.plan }, cost: best.cost } : undefined;
}
