// Python programs shipped in every generated trip environment: the query tools (tools/*.py over the
// read-only SQLite state, sharing tools/_db.py), the reference solution (talks to the tools only)
// and the verifier (checks every rule and constraint against the database).

export interface ToolDef {
  name: string;
  description: string;
  parameters: Record<string, unknown>;
  examples: Array<Record<string, unknown>>;
  /** Python body; runs after `from _db import *`, with `a` = arguments and `db` = connection. */
  body: string;
}

const str = (description: string) => ({ type: 'string', description });
const obj = (props: Record<string, unknown>) => ({
  type: 'object',
  properties: props,
  required: Object.keys(props),
  additionalProperties: false,
});

export const DB_HELPER = `"""Shared helpers for the trip tools: read-only database access, argument parsing, errors."""
import json
import os
import sqlite3
import sys


def connect():
    return sqlite3.connect("file:" + os.environ["DSV32_DB"] + "?mode=ro", uri=True)


def read_args():
    return json.load(sys.stdin)


def fail(message):
    sys.stderr.write(message + "\\n")
    sys.exit(2)


def rows(db, sql, params=()):
    cur = db.execute(sql, params)
    cols = [d[0] for d in cur.description]
    out = [dict(zip(cols, r)) for r in cur.fetchall()]
    for r in out:
        if "indoor" in r:
            r["indoor"] = bool(r["indoor"])
    return out


def city_id(db, name):
    r = db.execute("SELECT id FROM cities WHERE name = ?", (name,)).fetchone()
    if r is None:
        fail("unknown city %r; get_all_cities lists the cities" % (name,))
    return r[0]


def check_date(date):
    if not isinstance(date, str) or len(date) != 10 or date[4] != "-" or date[7] != "-":
        fail("date must look like YYYY-MM-DD, got %r" % (date,))


def emit(value):
    print(json.dumps(value, ensure_ascii=False, sort_keys=True))
`;

const HOTEL_COLS = 'h.name, c.name AS city, h.price_per_night, h.rating, h.stars';
const REST_COLS = 'r.name, c.name AS city, r.cuisine, r.avg_price, r.rating';
const ATTR_COLS = 'a.name, c.name AS city, a.category, a.ticket_price, a.rating, a.indoor';
const TRANS_SQL =
  'SELECT t.code, t.mode, f.name AS from_city, d.name AS to_city, t.date, t.depart_time, t.arrive_time, t.price ' +
  'FROM transport t JOIN cities f ON f.id = t.from_city_id JOIN cities d ON d.id = t.to_city_id';

export function tripTools(ex: { city: string; other: string; date: string; hotel: string; restaurant: string; attraction: string; province: string; cuisine: string }): ToolDef[] {
  return [
    {
      name: 'get_all_cities',
      description: 'List every city in the database with its province.',
      parameters: obj({}),
      examples: [{}],
      body: `emit(rows(db, "SELECT name, province FROM cities ORDER BY name"))`,
    },
    {
      name: 'get_city_by_name',
      description: 'Details of one city: province, description and how many hotels, restaurants and attractions it has.',
      parameters: obj({ city: str('city name') }),
      examples: [{ city: ex.city }],
      body: `cid = city_id(db, a["city"])
c = rows(db, "SELECT name, province, description FROM cities WHERE id = ?", (cid,))[0]
for table in ("hotels", "restaurants", "attractions"):
    c[table] = db.execute("SELECT count(*) FROM %s WHERE city_id = ?" % table, (cid,)).fetchone()[0]
emit(c)`,
    },
    {
      name: 'get_cities_by_province',
      description: 'Cities in a province.',
      parameters: obj({ province: str('province name, e.g. Zhejiang') }),
      examples: [{ province: ex.province }],
      body: `emit(rows(db, "SELECT name, province FROM cities WHERE province = ? ORDER BY name", (a["province"],)))`,
    },
    {
      name: 'get_all_hotels_by_city',
      description: 'All hotels in a city with nightly price (CNY), rating (0-5) and stars.',
      parameters: obj({ city: str('city name') }),
      examples: [{ city: ex.city }],
      body: `cid = city_id(db, a["city"])
emit(rows(db, "SELECT ${HOTEL_COLS} FROM hotels h JOIN cities c ON c.id = h.city_id WHERE h.city_id = ? ORDER BY h.name", (cid,)))`,
    },
    {
      name: 'get_all_restaurants_by_city',
      description: 'All restaurants in a city with cuisine, average price per meal (CNY) and rating (0-5).',
      parameters: obj({ city: str('city name') }),
      examples: [{ city: ex.city }],
      body: `cid = city_id(db, a["city"])
emit(rows(db, "SELECT ${REST_COLS} FROM restaurants r JOIN cities c ON c.id = r.city_id WHERE r.city_id = ? ORDER BY r.name", (cid,)))`,
    },
    {
      name: 'get_all_attractions_by_city',
      description: 'All attractions in a city with category, ticket price (CNY), rating (0-5) and whether it is indoors.',
      parameters: obj({ city: str('city name') }),
      examples: [{ city: ex.city }],
      body: `cid = city_id(db, a["city"])
emit(rows(db, "SELECT ${ATTR_COLS} FROM attractions a JOIN cities c ON c.id = a.city_id WHERE a.city_id = ? ORDER BY a.name", (cid,)))`,
    },
    {
      name: 'get_infos_by_city',
      description: 'Hotels, restaurants and attractions of a city in one call.',
      parameters: obj({ city: str('city name') }),
      examples: [{ city: ex.other }],
      body: `cid = city_id(db, a["city"])
emit({
    "city": a["city"],
    "hotels": rows(db, "SELECT ${HOTEL_COLS} FROM hotels h JOIN cities c ON c.id = h.city_id WHERE h.city_id = ? ORDER BY h.name", (cid,)),
    "restaurants": rows(db, "SELECT ${REST_COLS} FROM restaurants r JOIN cities c ON c.id = r.city_id WHERE r.city_id = ? ORDER BY r.name", (cid,)),
    "attractions": rows(db, "SELECT ${ATTR_COLS} FROM attractions a JOIN cities c ON c.id = a.city_id WHERE a.city_id = ? ORDER BY a.name", (cid,)),
})`,
    },
    {
      name: 'get_infos_by_hotel',
      description: 'Details of a hotel by its exact name, including its city.',
      parameters: obj({ name: str('hotel name') }),
      examples: [{ name: ex.hotel }],
      body: `r = rows(db, "SELECT ${HOTEL_COLS} FROM hotels h JOIN cities c ON c.id = h.city_id WHERE h.name = ?", (a["name"],))
if not r:
    fail("no hotel named %r" % (a["name"],))
emit(r[0])`,
    },
    {
      name: 'get_infos_by_restaurant',
      description: 'Details of a restaurant by its exact name, including its city.',
      parameters: obj({ name: str('restaurant name') }),
      examples: [{ name: ex.restaurant }],
      body: `r = rows(db, "SELECT ${REST_COLS} FROM restaurants r JOIN cities c ON c.id = r.city_id WHERE r.name = ?", (a["name"],))
if not r:
    fail("no restaurant named %r" % (a["name"],))
emit(r[0])`,
    },
    {
      name: 'get_infos_by_attraction',
      description: 'Details of an attraction by its exact name, including its city.',
      parameters: obj({ name: str('attraction name') }),
      examples: [{ name: ex.attraction }],
      body: `r = rows(db, "SELECT ${ATTR_COLS} FROM attractions a JOIN cities c ON c.id = a.city_id WHERE a.name = ?", (a["name"],))
if not r:
    fail("no attraction named %r" % (a["name"],))
emit(r[0])`,
    },
    {
      name: 'get_transport',
      description: 'Direct trains, flights and buses from one city to another on a date, with code, times and price (CNY).',
      parameters: obj({ from_city: str('departure city'), to_city: str('arrival city'), date: str('YYYY-MM-DD') }),
      examples: [{ from_city: ex.city, to_city: ex.other, date: ex.date }],
      body: `check_date(a["date"])
f = city_id(db, a["from_city"])
t = city_id(db, a["to_city"])
emit(rows(db, "${TRANS_SQL} WHERE t.from_city_id = ? AND t.to_city_id = ? AND t.date = ? ORDER BY t.depart_time, t.code", (f, t, a["date"])))`,
    },
    {
      name: 'get_transport_from_city',
      description: 'Every direct train, flight and bus leaving a city on a date, to any destination.',
      parameters: obj({ from_city: str('departure city'), date: str('YYYY-MM-DD') }),
      examples: [{ from_city: ex.city, date: ex.date }],
      body: `check_date(a["date"])
f = city_id(db, a["from_city"])
emit(rows(db, "${TRANS_SQL} WHERE t.from_city_id = ? AND t.date = ? ORDER BY d.name, t.depart_time, t.code", (f, a["date"])))`,
    },
    {
      name: 'get_weather_by_city_date',
      description: 'Weather forecast (condition, high/low in Celsius) for a city on a date.',
      parameters: obj({ city: str('city name'), date: str('YYYY-MM-DD') }),
      examples: [{ city: ex.city, date: ex.date }],
      body: `check_date(a["date"])
cid = city_id(db, a["city"])
r = rows(db, "SELECT c.name AS city, w.date, w.condition, w.temp_high, w.temp_low FROM weather w JOIN cities c ON c.id = w.city_id WHERE w.city_id = ? AND w.date = ?", (cid, a["date"]))
if not r:
    fail("no forecast for %s on %s" % (a["city"], a["date"]))
emit(r[0])`,
    },
    {
      name: 'get_hotels_by_price_range',
      description: 'Hotels in a city whose nightly price is within [min_price, max_price] CNY.',
      parameters: {
        type: 'object',
        properties: { city: str('city name'), min_price: { type: 'number', minimum: 0 }, max_price: { type: 'number', minimum: 0 } },
        required: ['city', 'min_price', 'max_price'],
        additionalProperties: false,
      },
      examples: [{ city: ex.city, min_price: 200, max_price: 800 }],
      body: `cid = city_id(db, a["city"])
emit(rows(db, "SELECT ${HOTEL_COLS} FROM hotels h JOIN cities c ON c.id = h.city_id WHERE h.city_id = ? AND h.price_per_night BETWEEN ? AND ? ORDER BY h.price_per_night, h.name", (cid, a["min_price"], a["max_price"])))`,
    },
    {
      name: 'get_restaurants_by_cuisine',
      description: 'Restaurants in a city serving a cuisine (e.g. Sichuan, Cantonese, Hotpot).',
      parameters: obj({ city: str('city name'), cuisine: str('cuisine') }),
      examples: [{ city: ex.city, cuisine: ex.cuisine }],
      body: `cid = city_id(db, a["city"])
emit(rows(db, "SELECT ${REST_COLS} FROM restaurants r JOIN cities c ON c.id = r.city_id WHERE r.city_id = ? AND r.cuisine = ? ORDER BY r.name", (cid, a["cuisine"])))`,
    },
  ];
}

export function toolSource(t: ToolDef): string {
  return `"""${t.name}: ${t.description}"""
from _db import *

a = read_args()
db = connect()
${t.body}
`;
}

const dayPlanSchema = {
  type: 'object',
  properties: {
    date: { type: 'string', description: 'YYYY-MM-DD' },
    city: { type: 'string' },
    transport: { type: 'string', description: 'code of the service taken to reach the city that day' },
    hotel: { type: 'string' },
    afternoon_restaurant: { type: 'string' },
    afternoon_attraction: { type: 'string' },
    evening_restaurant: { type: 'string' },
  },
  required: ['date', 'city', 'transport', 'hotel', 'afternoon_restaurant', 'afternoon_attraction', 'evening_restaurant'],
  additionalProperties: false,
};

export const SUBMIT_TOOL = {
  name: 'submit_result',
  description: 'Submit the final itinerary: one entry per day, in order. Ends the task.',
  parameters: { type: 'object', properties: { itinerary: { type: 'array', items: dayPlanSchema } }, required: ['itinerary'], additionalProperties: false },
};

/** Shared constraint checks for the verifier (Python twin of constraints.ts). */
export const VERIFIER = `"""Trip verifier: checks an itinerary against every rule of the task, using the database."""
import json
import os
import sqlite3
import sys
from datetime import date, timedelta

RAINY = {"rain", "storm"}
KEYS = ["date", "city", "transport", "hotel", "afternoon_restaurant", "afternoon_attraction", "evening_restaurant"]


def verdict(score, reason):
    print(json.dumps({"score": score, "reason": reason}))
    sys.exit(0)


def tier_violation(h, r1, r2, ticket):
    if h >= 800:
        if not (r1["avg_price"] + r2["avg_price"] < 350):
            return "hotel >= 800 needs restaurants under 350 together (got %d)" % (r1["avg_price"] + r2["avg_price"])
        if not (r1["rating"] >= 4.0 and r2["rating"] >= 4.0):
            return "hotel >= 800 needs both restaurants rated >= 4.0"
        if not (ticket < 120):
            return "hotel >= 800 needs an attraction under 120 (got %d)" % ticket
        return None
    if h >= 500:
        if not (max(r1["rating"], r2["rating"]) >= 4.0):
            return "hotel 500-800 needs a restaurant rated >= 4.0"
        if not (ticket < 180):
            return "hotel 500-800 needs an attraction under 180 (got %d)" % ticket
        return None
    if h >= 200:
        if not (max(r1["rating"], r2["rating"]) >= 3.2):
            return "hotel 200-500 needs a restaurant rated >= 3.2"
        return None
    return "hotel under 200 (%d) is not allowed on a tiered-budget day" % h


def one(db, sql, params):
    cur = db.execute(sql, params)
    r = cur.fetchone()
    if r is None:
        return None
    return dict(zip([d[0] for d in cur.description], r))


def main():
    inp = json.load(sys.stdin)
    p = inp["task"]["params"]
    ans = inp.get("answer")
    db = sqlite3.connect("file:" + os.environ["DSV32_DB"] + "?mode=ro", uri=True)
    if not isinstance(ans, dict) or not isinstance(ans.get("itinerary"), list):
        verdict(0, "answer must be an object with an itinerary list")
    days = ans["itinerary"]
    if len(days) != p["days"]:
        verdict(0, "itinerary has %d days, the task asks for %d" % (len(days), p["days"]))
    problems = []
    origin = one(db, "SELECT id, name FROM cities WHERE name = ?", (p["origin"],))
    start = date.fromisoformat(p["startDate"])
    prev = origin
    seen_cities, seen_places = set(), set()
    resolved = []
    total = 0
    for k, d in enumerate(days, start=1):
        if not isinstance(d, dict) or any(not isinstance(d.get(key), str) for key in KEYS):
            verdict(0, "day %d must have string fields %s" % (k, ", ".join(KEYS)))
        want = (start + timedelta(days=k - 1)).isoformat()
        if d["date"] != want:
            problems.append("day %d: date %s should be %s" % (k, d["date"], want))
        city = one(db, "SELECT id, name FROM cities WHERE name = ?", (d["city"],))
        if city is None:
            verdict(0, "day %d: unknown city %r" % (k, d["city"]))
        if city["id"] == origin["id"]:
            problems.append("day %d: returns to the origin %s" % (k, city["name"]))
        if city["id"] in seen_cities:
            problems.append("day %d: city %s repeated" % (k, city["name"]))
        seen_cities.add(city["id"])
        leg = one(db, "SELECT code, mode, price FROM transport WHERE code = ? AND date = ? AND from_city_id = ? AND to_city_id = ?",
                  (d["transport"], want, prev["id"], city["id"]))
        if leg is None:
            problems.append("day %d: no service %s from %s to %s on %s" % (k, d["transport"], prev["name"], city["name"], want))
        hotel = one(db, "SELECT name, price_per_night, rating FROM hotels WHERE name = ? AND city_id = ?", (d["hotel"], city["id"]))
        r1 = one(db, "SELECT name, cuisine, avg_price, rating FROM restaurants WHERE name = ? AND city_id = ?", (d["afternoon_restaurant"], city["id"]))
        r2 = one(db, "SELECT name, cuisine, avg_price, rating FROM restaurants WHERE name = ? AND city_id = ?", (d["evening_restaurant"], city["id"]))
        at = one(db, "SELECT name, category, ticket_price, indoor FROM attractions WHERE name = ? AND city_id = ?", (d["afternoon_attraction"], city["id"]))
        for what, row, key in (("hotel", hotel, "hotel"), ("afternoon restaurant", r1, "afternoon_restaurant"),
                               ("evening restaurant", r2, "evening_restaurant"), ("attraction", at, "afternoon_attraction")):
            if row is None:
                problems.append("day %d: %s %r is not in %s" % (k, what, d[key], city["name"]))
        for key in ("hotel", "afternoon_restaurant", "evening_restaurant", "afternoon_attraction"):
            if d[key] in seen_places:
                problems.append("day %d: %r appears twice" % (k, d[key]))
            seen_places.add(d[key])
        if None in (hotel, r1, r2, at, leg):
            resolved.append(None)
        else:
            weather = one(db, "SELECT condition FROM weather WHERE city_id = ? AND date = ?", (city["id"], want))
            resolved.append({"k": k, "city": city, "leg": leg, "hotel": hotel, "r1": r1, "r2": r2, "at": at,
                             "wet": weather is not None and weather["condition"] in RAINY})
            total += leg["price"] + hotel["price_per_night"] + r1["avg_price"] + r2["avg_price"] + at["ticket_price"]
        prev = city
    if problems:
        verdict(0, "; ".join(problems[:5]))
    for c in p["constraints"]:
        t = c["type"]
        if t == "tiered_budget":
            x = resolved[c["day"] - 1]
            v = tier_violation(x["hotel"]["price_per_night"], x["r1"], x["r2"], x["at"]["ticket_price"])
            if v:
                problems.append("day %d tiered budget: %s" % (c["day"], v))
        elif t == "min_hotel_rating":
            for x in resolved:
                if x["hotel"]["rating"] < c["min"]:
                    problems.append("day %d: hotel rated %.1f < %.1f" % (x["k"], x["hotel"]["rating"], c["min"]))
        elif t == "rain_indoor":
            for x in resolved:
                if x["wet"] and not x["at"]["indoor"]:
                    problems.append("day %d: rainy in %s but the attraction is outdoors" % (x["k"], x["city"]["name"]))
        elif t == "max_total_cost":
            if total > c["budget"]:
                problems.append("total cost %d exceeds the budget %d" % (total, c["budget"]))
        elif t == "transport_mode":
            for x in resolved:
                if x["leg"]["mode"] != c["mode"]:
                    problems.append("day %d: travels by %s, only %s allowed" % (x["k"], x["leg"]["mode"], c["mode"]))
        elif t == "evening_cuisine":
            x = resolved[c["day"] - 1]
            if x["r2"]["cuisine"] != c["cuisine"]:
                problems.append("day %d: dinner is %s, not %s" % (c["day"], x["r2"]["cuisine"], c["cuisine"]))
        elif t == "include_attraction_category":
            if not any(x["at"]["category"] == c["category"] for x in resolved):
                problems.append("no attraction of category %s" % c["category"])
        elif t == "must_visit_city":
            if not any(x["city"]["name"] == c["city"] for x in resolved):
                problems.append("the trip does not include %s" % c["city"])
        else:
            verdict(0, "unknown constraint type %r in the task" % t)
    if problems:
        verdict(0, "; ".join(problems[:5]))
    verdict(1, "all %d constraints hold; total cost %d" % (len(p["constraints"]), total))


main()
`;

/** Reference solution: exact minimum-cost search through the tools only (Python twin of solver.ts). */
export const SOLUTION = `"""Reference solution for trip tasks: depth-first search over cities using only the tools."""
from datetime import date, timedelta

from dsv32_env import task, call, submit

RAINY = {"rain", "storm"}
p = task["params"]
cs = p["constraints"]
tiered = {c["day"] for c in cs if c["type"] == "tiered_budget"}
min_rating = max([c["min"] for c in cs if c["type"] == "min_hotel_rating"], default=None)
mode = next((c["mode"] for c in cs if c["type"] == "transport_mode"), None)
rain_indoor = any(c["type"] == "rain_indoor" for c in cs)
budget = min([c["budget"] for c in cs if c["type"] == "max_total_cost"], default=None)
category = next((c["category"] for c in cs if c["type"] == "include_attraction_category"), None)
must_city = next((c["city"] for c in cs if c["type"] == "must_visit_city"), None)
cuisine_by_day = {c["day"]: c["cuisine"] for c in cs if c["type"] == "evening_cuisine"}
start = date.fromisoformat(p["startDate"])

_cache = {}


def cached(tool, **args):
    key = (tool, tuple(sorted(args.items())))
    if key not in _cache:
        _cache[key] = call(tool, **args)
    return _cache[key]


def tier_ok(h, r1, r2, ticket):
    if h >= 800:
        return r1["avg_price"] + r2["avg_price"] < 350 and r1["rating"] >= 4.0 and r2["rating"] >= 4.0 and ticket < 120
    if h >= 500:
        return max(r1["rating"], r2["rating"]) >= 4.0 and ticket < 180
    if h >= 200:
        return max(r1["rating"], r2["rating"]) >= 3.2
    return False


_combos = {}


def day_combos(city, day, when):
    key = (city, day)
    if key in _combos:
        return _combos[key]
    info = cached("get_infos_by_city", city=city)
    wet = False
    if rain_indoor:
        wet = cached("get_weather_by_city_date", city=city, date=when)["condition"] in RAINY
    cuisine = cuisine_by_day.get(day)
    best_any = best_cat = None
    for h in info["hotels"]:
        if min_rating is not None and h["rating"] < min_rating:
            continue
        for r1 in info["restaurants"]:
            for r2 in info["restaurants"]:
                if r1["name"] == r2["name"] or (cuisine is not None and r2["cuisine"] != cuisine):
                    continue
                for at in info["attractions"]:
                    if wet and not at["indoor"]:
                        continue
                    if day in tiered and not tier_ok(h["price_per_night"], r1, r2, at["ticket_price"]):
                        continue
                    cost = h["price_per_night"] + r1["avg_price"] + r2["avg_price"] + at["ticket_price"]
                    combo = (cost, h, r1, r2, at)
                    if best_any is None or cost < best_any[0]:
                        best_any = combo
                    if category is not None and at["category"] == category and (best_cat is None or cost < best_cat[0]):
                        best_cat = combo
    _combos[key] = (best_any, best_cat)
    return _combos[key]


best = None
plan = []
used = {p["origin"]}


def dfs(day, frm, cost, cat_done, must_done):
    global best
    if best is not None and cost >= best[0]:
        return
    if day > p["days"]:
        if (category is not None and not cat_done) or (must_city is not None and not must_done):
            return
        if budget is not None and cost > budget:
            return
        best = (cost, [dict(d) for d in plan])
        return
    when = (start + timedelta(days=day - 1)).isoformat()
    cheapest = {}
    for leg in cached("get_transport_from_city", from_city=frm, date=when):
        if mode is not None and leg["mode"] != mode:
            continue
        cur = cheapest.get(leg["to_city"])
        if cur is None or leg["price"] < cur["price"] or (leg["price"] == cur["price"] and leg["code"] < cur["code"]):
            cheapest[leg["to_city"]] = leg
    for to in sorted(cheapest):
        if to in used:
            continue
        leg = cheapest[to]
        any_c, cat_c = day_combos(to, day, when)
        choices = [c for i, c in enumerate([any_c, cat_c]) if c is not None and (i == 0 or c is not any_c)]
        for c in choices:
            cost_c, h, r1, r2, at = c
            used.add(to)
            plan.append({"date": when, "city": to, "transport": leg["code"], "hotel": h["name"],
                         "afternoon_restaurant": r1["name"], "afternoon_attraction": at["name"],
                         "evening_restaurant": r2["name"]})
            dfs(day + 1, to, cost + leg["price"] + cost_c, cat_done or at["category"] == category, must_done or to == must_city)
            plan.pop()
            used.discard(to)


dfs(1, p["origin"], 0, False, False)
if best is None:
    raise SystemExit("no itinerary satisfies the constraints")
submit({"itinerary": best[1]})
`;
