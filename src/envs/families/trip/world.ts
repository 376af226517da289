// The trip-planning world: cities with hotels, restaurants and attractions, a transport timetable
// between cities per date, and per-city daily weather over a two-week window. Generated from a seed
// and written to SQLite; the generator's solver reads the same in-memory copy.
import Database from 'better-sqlite3';
import { Rng } from '../../rng.js';
import {
  ATTRACTION_CATEGORIES,
  ATTRACTION_FIRST,
  ATTRACTION_NOUN,
  CITY_POOL,
  CUISINES,
  HOTEL_FIRST,
  HOTEL_KIND,
  INDOOR_CATEGORIES,
  RESTAURANT_FIRST,
  RESTAURANT_KIND,
  WEATHER,
} from './names.js';

export interface City { id: number; name: string; province: string; description: string; x: number; y: number }
export interface Hotel { id: number; cityId: number; name: string; price: number; rating: number; stars: number }
export interface Restaurant { id: number; cityId: number; name: string; cuisine: string; price: number; rating: number }
export interface Attraction { id: number; cityId: number; name: string; category: string; ticket: number; rating: number; indoor: boolean }
export interface Transport { id: number; code: string; mode: string; fromId: number; toId: number; date: string; depart: string; arrive: string; price: number }
export interface Weather { cityId: number; date: string; condition: string; high: number; low: number }

export interface World {
  cities: City[];
  hotels: Hotel[];
  restaurants: Restaurant[];
  attractions: Attraction[];
  transport: Transport[];
  weather: Weather[];
  dates: string[];
}

export const WINDOW_START = '2025-10-01';
export const WINDOW_DAYS = 14;
export const N_CITIES = 12;

export function addDays(isoDate: string, n: number): string {
  const d = new Date(isoDate + 'T00:00:00Z');
  d.setUTCDate(d.getUTCDate() + n);
  return d.toISOString().slice(0, 10);
}

function rating(rng: Rng, lo: number, hi: number): number {
  return Math.round((lo + rng.next() * (hi - lo)) * 10) / 10;
}

function hhmm(minutes: number): string {
  const m = ((minutes % 1440) + 1440) % 1440;
  return `${String(Math.floor(m / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`;
}

export function generateWorld(seed: number): World {
  const rng = new Rng(seed).fork('world');
  const dates = Array.from({ length: WINDOW_DAYS }, (_, i) => addDays(WINDOW_START, i));
  const cities: City[] = rng.sample(CITY_POOL, N_CITIES).map(([name, province], i) => ({
    id: i + 1,
    name,
    province,
    description: `${name}, a city in ${province} province`,
    x: rng.int(0, 100),
    y: rng.int(0, 100),
  }));

  const hotels: Hotel[] = [];
  const restaurants: Restaurant[] = [];
  const attractions: Attraction[] = [];
  for (const c of cities) {
    const used = new Set<string>();
    const unique = (make: () => string) => {
      for (;;) {
        const n = make();
        if (!used.has(n)) return used.add(n), n;
      }
    };
    // Hotel prices span the paper's tiers (<200, 200-500, 500-800, >=800 CNY per night).
    const hotelBands: Array<[number, number]> = [[120, 199], [200, 499], [200, 499], [500, 799], [500, 799], [800, 1600], [800, 1600]];
    for (const [lo, hi] of hotelBands) {
      const stars = lo >= 800 ? 5 : lo >= 500 ? rng.int(4, 5) : lo >= 200 ? rng.int(3, 4) : 2;
      hotels.push({
        id: hotels.length + 1,
        cityId: c.id,
        name: unique(() => `${c.name} ${rng.pick(HOTEL_FIRST)} ${rng.pick(HOTEL_KIND)}`),
        price: rng.int(lo, hi),
        rating: rating(rng, 2.8 + stars * 0.2, Math.min(5, 3.6 + stars * 0.28)),
        stars,
      });
    }
    const nr = rng.int(8, 10);
    for (let i = 0; i < nr; i++) {
      const price = rng.int(4, 36) * 10;
      restaurants.push({
        id: restaurants.length + 1,
        cityId: c.id,
        name: unique(() => `${rng.pick(RESTAURANT_FIRST)} ${c.name} ${rng.pick(RESTAURANT_KIND)}`),
        cuisine: rng.pick(CUISINES),
        price,
        rating: rating(rng, 2.8, price > 200 ? 5.0 : 4.6),
      });
    }
    const na = rng.int(6, 8);
    for (let i = 0; i < na; i++) {
      const category = rng.pick(ATTRACTION_CATEGORIES);
      const free = category === 'park' || category === 'market' ? rng.chance(0.5) : rng.chance(0.1);
      attractions.push({
        id: attractions.length + 1,
        cityId: c.id,
        name: unique(() => `${rng.pick(ATTRACTION_FIRST)} ${rng.pick(ATTRACTION_NOUN[category])}`) + ` (${c.name})`,
        category,
        ticket: free ? 0 : rng.int(2, 30) * 10,
        rating: rating(rng, 3.0, 5.0),
        indoor: INDOOR_CATEGORIES.has(category),
      });
    }
  }

  // Each ordered city pair gets a route with probability ~0.45, served by a mode suited to the distance
  // (bus when near, train in between, flight when far). Each route runs on ~80% of days, sometimes
  // twice a day; prices scale with distance.
  const transport: Transport[] = [];
  let serial = 100;
  for (const a of cities) {
    for (const b of cities) {
      if (a.id === b.id || !rng.chance(0.45)) continue;
      const dist = Math.hypot(a.x - b.x, b.y - a.y);
      const modes = dist < 30 ? ['bus', 'train'] : dist < 70 ? ['train', 'train', 'flight'] : ['flight', 'train'];
      const mode = rng.pick(modes);
      const prefix = mode === 'flight' ? 'MU' : mode === 'bus' ? 'B' : rng.pick(['G', 'D']);
      const perKm = mode === 'flight' ? 9 : mode === 'train' ? 4 : 2.5;
      const base = Math.round((mode === 'flight' ? 300 : 30) + dist * perKm);
      const minutes = Math.round((mode === 'flight' ? 90 : mode === 'train' ? 40 : 60) + dist * (mode === 'flight' ? 1 : mode === 'train' ? 4 : 7));
      const services = rng.chance(0.3) ? 2 : 1;
      const codes = Array.from({ length: services }, () => `${prefix}${serial++}`);
      for (const date of dates) {
        codes.forEach((code, k) => {
          if (!rng.chance(0.8)) return;
          const depart = rng.int(6, 11) * 60 + k * 300 + rng.pick([0, 15, 30, 45]);
          transport.push({
            id: transport.length + 1,
            code,
            mode,
            fromId: a.id,
            toId: b.id,
            date,
            depart: hhmm(depart),
            arrive: hhmm(depart + minutes),
            price: Math.round(base * (0.85 + rng.next() * 0.3)),
          });
        });
      }
    }
  }

  const weather: Weather[] = [];
  for (const c of cities) {
    const wetness = rng.next() * 0.4;
    for (const date of dates) {
      const condition = rng.chance(wetness) ? rng.pick(['rain', 'rain', 'storm']) : rng.pick(WEATHER.slice(0, 3));
      const high = rng.int(16, 31);
      weather.push({ cityId: c.id, date, condition, high, low: high - rng.int(5, 11) });
    }
  }
  return { cities, hotels, restaurants, attractions, transport, weather, dates };
}

export function writeWorldDb(w: World, path: string): void {
  const db = new Database(path);
  try {
    db.exec(`
      CREATE TABLE cities (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, province TEXT NOT NULL, description TEXT NOT NULL);
      CREATE TABLE hotels (id INTEGER PRIMARY KEY, city_id INTEGER NOT NULL REFERENCES cities(id), name TEXT NOT NULL UNIQUE,
        price_per_night INTEGER NOT NULL, rating REAL NOT NULL, stars INTEGER NOT NULL);
      CREATE TABLE restaurants (id INTEGER PRIMARY KEY, city_id INTEGER NOT NULL REFERENCES cities(id), name TEXT NOT NULL UNIQUE,
        cuisine TEXT NOT NULL, avg_price INTEGER NOT NULL, rating REAL NOT NULL);
      CREATE TABLE attractions (id INTEGER PRIMARY KEY, city_id INTEGER NOT NULL REFERENCES cities(id), name TEXT NOT NULL UNIQUE,
        category TEXT NOT NULL, ticket_price INTEGER NOT NULL, rating REAL NOT NULL, indoor INTEGER NOT NULL);
      CREATE TABLE transport (id INTEGER PRIMARY KEY, code TEXT NOT NULL, mode TEXT NOT NULL,
        from_city_id INTEGER NOT NULL REFERENCES cities(id), to_city_id INTEGER NOT NULL REFERENCES cities(id),
        date TEXT NOT NULL, depart_time TEXT NOT NULL, arrive_time TEXT NOT NULL, price INTEGER NOT NULL, UNIQUE (code, date));
      CREATE INDEX transport_from ON transport (from_city_id, date);
      CREATE TABLE weather (city_id INTEGER NOT NULL REFERENCES cities(id), date TEXT NOT NULL, condition TEXT NOT NULL,
        temp_high INTEGER NOT NULL, temp_low INTEGER NOT NULL, PRIMARY KEY (city_id, date));
    `);
    db.transaction(() => {
      const ic = db.prepare('INSERT INTO cities VALUES (?, ?, ?, ?)');
      for (const c of w.cities) ic.run(c.id, c.name, c.province, c.description);
      const ih = db.prepare('INSERT INTO hotels VALUES (?, ?, ?, ?, ?, ?)');
      for (const h of w.hotels) ih.run(h.id, h.cityId, h.name, h.price, h.rating, h.stars);
      const ir = db.prepare('INSERT INTO restaurants VALUES (?, ?, ?, ?, ?, ?)');
      for (const r of w.restaurants) ir.run(r.id, r.cityId, r.name, r.cuisine, r.price, r.rating);
      const ia = db.prepare('INSERT INTO attractions VALUES (?, ?, ?, ?, ?, ?, ?)');
      for (const a of w.attractions) ia.run(a.id, a.cityId, a.name, a.category, a.ticket, a.rating, a.indoor ? 1 : 0);
      const it = db.prepare('INSERT INTO transport VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)');
      for (const t of w.transport) it.run(t.id, t.code, t.mode, t.fromId, t.toId, t.date, t.depart, t.arrive, t.price);
      const iw = db.prepare('INSERT INTO weather VALUES (?, ?, ?, ?, ?)');
      for (const x of w.weather) iw.run(x.cityId, x.date, x.condition, x.high, x.low);
    })();
  } finally {
    db.close();
  }
}
