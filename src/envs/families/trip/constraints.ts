// Trip task parameters and their rules. The same semantics are implemented three times on purpose:
// here (TypeScript, used by the generator's solver), in the reference solution and in the verifier
// (Python, shipped in the environment). `env validate` cross-checks them: the Python solution must be
// accepted by the Python verifier on every generated task.
//
// Fixed rules of every task: day k is spent in a new city (never the origin, never repeated), reached
// on that day's date by a transport departing the previous day's city (the origin on day 1); hotel,
// both restaurants and the attraction are in that day's city; the two restaurants differ.
// Cost of a day = hotel price + both restaurants' average prices + attraction ticket + transport.
//
// The paper's tiered budget (rl.md §2), applied to one day: with hotel price h,
//   h >= 800        -> restaurants together < 350, both rated >= 4.0, attraction ticket < 120
//   500 <= h < 800  -> at least one restaurant rated >= 4.0, attraction ticket < 180
//   200 <= h < 500  -> at least one restaurant rated >= 3.2
//   h < 200         -> not allowed on that day
export type TripConstraint =
  | { type: 'tiered_budget'; day: number }
  | { type: 'min_hotel_rating'; min: number }
  | { type: 'rain_indoor' }
  | { type: 'max_total_cost'; budget: number }
  | { type: 'transport_mode'; mode: string }
  | { type: 'evening_cuisine'; day: number; cuisine: string }
  | { type: 'include_attraction_category'; category: string }
  | { type: 'must_visit_city'; city: string };

export interface TripParams {
  origin: string;
  startDate: string;
  days: number;
  constraints: TripConstraint[];
}

export interface DayPlan {
  date: string;
  city: string;
  transport: string;
  hotel: string;
  afternoon_restaurant: string;
  afternoon_attraction: string;
  evening_restaurant: string;
}

export interface TripAnswer {
  itinerary: DayPlan[];
}

/** Tiered-budget rule for one day; returns a violation message or undefined. */
export function tierViolation(hotelPrice: number, r1: { price: number; rating: number }, r2: { price: number; rating: number }, ticket: number): string | undefined {
  if (hotelPrice >= 800) {
    if (!(r1.price + r2.price < 350)) return `hotel >= 800 needs restaurants under 350 together (got ${r1.price + r2.price})`;
    if (!(r1.rating >= 4.0 && r2.rating >= 4.0)) return 'hotel >= 800 needs both restaurants rated >= 4.0';
    if (!(ticket < 120)) return `hotel >= 800 needs an attraction under 120 (got ${ticket})`;
    return undefined;
  }
  if (hotelPrice >= 500) {
    if (!(Math.max(r1.rating, r2.rating) >= 4.0)) return 'hotel 500-800 needs a restaurant rated >= 4.0';
    if (!(ticket < 180)) return `hotel 500-800 needs an attraction under 180 (got ${ticket})`;
    return undefined;
  }
  if (hotelPrice >= 200) {
    if (!(Math.max(r1.rating, r2.rating) >= 3.2)) return 'hotel 200-500 needs a restaurant rated >= 3.2';
    return undefined;
  }
  return `hotel under 200 (${hotelPrice}) is not allowed on a tiered-budget day`;
}

function dayList(days: number[]): string {
  const ds = [...days].sort((a, b) => a - b);
  return ds.length === 1 ? `day ${ds[0]}` : `days ${ds.slice(0, -1).join(', ')} and ${ds[ds.length - 1]}`;
}

/** One sentence for the tiered budget, shared by every tiered day. */
export function describeTiered(days: number[]): string {
  return (
    `On ${dayList(days)} the budget is tiered by the hotel's nightly price: if the hotel costs 800 CNY or more, ` +
        `the two restaurants together must cost under 350 CNY, both must be rated at least 4.0, and the attraction ticket must be under 120 CNY; ` +
        `if the hotel costs 500-800 CNY, at least one restaurant must be rated at least 4.0 and the ticket must be under 180 CNY; ` +
        `if the hotel costs 200-500 CNY, at least one restaurant must be rated at least 3.2; a hotel under 200 CNY is not allowed that day.`
  );
}

export function describeConstraint(c: TripConstraint): string {
  switch (c.type) {
    case 'tiered_budget':
      return describeTiered([c.day]);
    case 'min_hotel_rating':
      return `Every hotel must be rated at least ${c.min.toFixed(1)}.`;
    case 'rain_indoor':
      return 'On any day when the weather in that day\'s city is rain or storm, the afternoon attraction must be indoors.';
    case 'max_total_cost':
      return `The whole trip (hotels, both meals per day at the restaurants' average price, attraction tickets and transport) must cost at most ${c.budget} CNY.`;
    case 'transport_mode':
      return `Travel only by ${c.mode}.`;
    case 'evening_cuisine':
      return `On day ${c.day} dinner must be at a ${c.cuisine} restaurant.`;
    case 'include_attraction_category':
      return `At least one afternoon attraction must be a ${c.category}.`;
    case 'must_visit_city':
      return `The trip must include ${c.city}.`;
  }
}

export function renderPrompt(p: TripParams, lastDate: string): string {
  const tiered = p.constraints.flatMap((c) => (c.type === 'tiered_budget' ? [c.day] : []));
  const rules = [
    `Each day, travel to a city you have not visited yet (never back to ${p.origin}) by a train, flight or bus that runs from the previous day's city (${p.origin} on day 1) on that day's date.`,
    'Each day: one hotel, an afternoon restaurant, an afternoon attraction and an evening restaurant, all in that day\'s city; no hotel, restaurant or attraction may appear twice.',
    ...(tiered.length ? [describeTiered(tiered)] : []),
    ...p.constraints.filter((c) => c.type !== 'tiered_budget').map(describeConstraint),
  ];
  return (
    `Plan a ${p.days}-day trip departing from ${p.origin}, from ${p.startDate} to ${lastDate}.\n` +
    rules.map((r, i) => `${i + 1}. ${r}`).join('\n') +
    `\nUse the tools to look up cities, hotels, restaurants, attractions, transport and weather. ` +
    `When done, call submit_result with {"itinerary": [one object per day, in order, with keys date (YYYY-MM-DD), city, transport (the service code), hotel, afternoon_restaurant, afternoon_attraction, evening_restaurant]}, using the exact names from the tools.`
  );
}
