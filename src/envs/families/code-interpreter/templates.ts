// Task templates of the code-interpreter family. Each draws parameters from the seed, computes the
// ground truth here in TypeScript, and carries a Python reference program that the reference solution
// runs through the run_python tool; `env validate` therefore cross-checks two independent
// implementations. Numeric answers are checked with a tolerance, names exactly.
import { Rng } from '../../rng.js';
import { DEPARTMENTS, PRODUCTS, REGIONS, STATIONS, type Dataset } from './data.js';

export interface CiTask {
  kind: string;
  difficulty: 'easy' | 'medium' | 'hard';
  prompt: string;
  /** Python program printing the answer on its last stdout line. */
  code: string;
  truth: number | string;
}

const P = 1_000_000_007n;

function modpow(b: bigint, e: bigint, m: bigint): bigint {
  let r = 1n;
  b %= m;
  while (e > 0n) {
    if (e & 1n) r = (r * b) % m;
    b = (b * b) % m;
    e >>= 1n;
  }
  return r;
}

function primesBelow(n: number): number[] {
  const sieve = new Uint8Array(n);
  const out: number[] = [];
  for (let i = 2; i < n; i++) {
    if (sieve[i]) continue;
    out.push(i);
    for (let j = i * i; j < n; j += i) sieve[j] = 1;
  }
  return out;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const DB = 'import sqlite3\ndb = sqlite3.connect("data.sqlite")\n';

type Template = (r: Rng, d: Dataset) => CiTask | undefined;

const templates: Template[] = [
  (r) => {
    const [a, b, m] = [r.int(2, 999), r.int(10 ** 5, 10 ** 9), r.int(1000, 10 ** 6)];
    return {
      kind: 'modpow', difficulty: 'easy',
      prompt: `Compute ${a}^${b} mod ${m}. Submit the integer.`,
      code: `print(pow(${a}, ${b}, ${m}))\n`,
      truth: Number(modpow(BigInt(a), BigInt(b), BigInt(m))),
    };
  },
  (r) => {
    const n = r.int(1000, 60000);
    return {
      kind: 'prime_sum', difficulty: 'medium',
      prompt: `What is the sum of all prime numbers strictly less than ${n}?`,
      code: `n = ${n}\ns = bytearray(n)\nt = 0\nfor i in range(2, n):\n    if not s[i]:\n        t += i\n        for j in range(i * i, n, i):\n            s[j] = 1\nprint(t)\n`,
      truth: primesBelow(n).reduce((a, b) => a + b, 0),
    };
  },
  (r) => {
    const [n, p] = [r.int(50, 5000), r.int(2, 4)];
    let s = 0;
    for (let k = 1; k <= n; k++) s += 1 / k ** p;
    return {
      kind: 'zeta_partial', difficulty: 'easy',
      prompt: `Compute the partial sum of 1/k^${p} for k = 1..${n}, to at least 8 significant digits.`,
      code: `print(repr(sum(1 / k ** ${p} for k in range(1, ${n} + 1))))\n`,
      truth: s,
    };
  },
  (r) => {
    const n = r.int(100, 5000);
    const k = r.int(2, n - 2);
    // C(n, k) mod p via n!/(k!(n-k)!) with Fermat inverses (p is prime).
    let num = 1n;
    let den = 1n;
    for (let i = 0; i < k; i++) {
      num = (num * BigInt(n - i)) % P;
      den = (den * BigInt(i + 1)) % P;
    }
    return {
      kind: 'binomial_mod', difficulty: 'medium',
      prompt: `Compute the binomial coefficient C(${n}, ${k}) modulo 1000000007.`,
      code: `import math\nprint(math.comb(${n}, ${k}) % 1000000007)\n`,
      truth: Number((num * modpow(den, P - 2n, P)) % P),
    };
  },
  (r) => {
    const n = r.int(10 ** 5, 2 * 10 ** 6);
    const [a, b] = r.sample([3, 4, 5, 6, 7, 9, 11, 13], 2) as [number, number];
    const c = r.pick([2, 10, 17]);
    // Inclusion–exclusion would do; counting the residues in one period of lcm(a, b, c) is simpler.
    const gcd = (x: number, y: number): number => (y ? gcd(y, x % y) : x);
    const lcm = [a, b, c].reduce((x, y) => (x / gcd(x, y)) * y);
    const hit = (i: number) => (i % a === 0 || i % b === 0) && i % c !== 0;
    let perPeriod = 0;
    for (let i = 1; i <= lcm; i++) if (hit(i)) perPeriod++;
    let count = Math.floor(n / lcm) * perPeriod;
    for (let i = Math.floor(n / lcm) * lcm + 1; i <= n; i++) if (hit(i)) count++;
    return {
      kind: 'divisibility_count', difficulty: 'medium',
      prompt: `How many integers in 1..${n} are divisible by ${a} or by ${b}, but not by ${c}?`,
      code: `print(sum(1 for i in range(1, ${n} + 1) if (i % ${a} == 0 or i % ${b} == 0) and i % ${c} != 0))\n`,
      truth: count,
    };
  },
  (r) => {
    const [n, m] = [r.int(1000, 10 ** 6), r.int(100, 100000)];
    let [x, y] = [0, 1];
    for (let i = 0; i < n; i++) [x, y] = [y, (x + y) % m];
    return {
      kind: 'fibonacci_mod', difficulty: 'easy',
      prompt: `With F(0) = 0, F(1) = 1 and F(n) = F(n-1) + F(n-2), compute F(${n}) mod ${m}.`,
      code: `a, b = 0, 1\nfor _ in range(${n}):\n    a, b = b, (a + b) % ${m}\nprint(a)\n`,
      truth: x,
    };
  },
  (r, d) => {
    const region = r.pick(REGIONS);
    const rows = d.sales.filter((s) => s.region === region);
    return {
      kind: 'sales_mean_units', difficulty: 'easy',
      prompt: `In the sales table, what is the mean number of units per sale in the ${region} region?`,
      code: `${DB}print(repr(db.execute("SELECT avg(units) FROM sales WHERE region = ?", ("${region}",)).fetchone()[0]))\n`,
      truth: mean(rows.map((s) => s.units)),
    };
  },
  (r, d) => {
    const product = r.pick(PRODUCTS);
    const totals = new Map<string, number>();
    for (const s of d.sales) if (s.product === product) totals.set(s.region, (totals.get(s.region) ?? 0) + s.units * s.unit_price);
    const ranked = [...totals.entries()].sort((a, b) => b[1] - a[1]);
    // The answer must be unique: skip draws whose top two regions are within rounding of each other.
    if (ranked.length < 2 || ranked[0]![1] - ranked[1]![1] < 0.01) return undefined;
    return {
      kind: 'sales_top_region', difficulty: 'medium',
      prompt: `Which region has the highest total revenue (units × unit_price) for the product ${product}? Submit the region name.`,
      code: `${DB}print(db.execute("SELECT region FROM sales WHERE product = ? GROUP BY region ORDER BY sum(units * unit_price) DESC LIMIT 1", ("${product}",)).fetchone()[0])\n`,
      truth: ranked[0]![0],
    };
  },
  (r, d) => {
    const dept = r.pick(DEPARTMENTS);
    const xs = d.employees.filter((e) => e.department === dept).map((e) => e.salary);
    return {
      kind: 'median_salary', difficulty: 'medium',
      prompt: `What is the median salary in the ${dept} department (employees table)?`,
      code: `${DB}import statistics\nprint(repr(statistics.median(r[0] for r in db.execute("SELECT salary FROM employees WHERE department = ?", ("${dept}",)))))\n`,
      truth: median(xs),
    };
  },
  (r, d) => {
    const st = r.pick(STATIONS);
    const xs = d.sensors.filter((s) => s.station === st).map((s) => s.temperature);
    const m = mean(xs);
    return {
      kind: 'temperature_std', difficulty: 'medium',
      prompt: `What is the population standard deviation of the temperature readings at station ${st} (sensors table)? Give at least 6 significant digits.`,
      code: `${DB}import statistics\nprint(repr(statistics.pstdev([r[0] for r in db.execute("SELECT temperature FROM sensors WHERE station = ?", ("${st}",))])))\n`,
      truth: Math.sqrt(mean(xs.map((x) => (x - m) ** 2))),
    };
  },
  (r, d) => {
    const [year, salary] = [r.int(2000, 2018), 1000 * r.int(60, 140)];
    return {
      kind: 'employee_count', difficulty: 'easy',
      prompt: `How many employees were hired after ${year} (strictly) and earn more than ${salary}?`,
      code: `${DB}print(db.execute("SELECT count(*) FROM employees WHERE hired_year > ? AND salary > ?", (${year}, ${salary})).fetchone()[0])\n`,
      truth: d.employees.filter((e) => e.hired_year > year && e.salary > salary).length,
    };
  },
  (r, d) => {
    const st = r.pick(STATIONS);
    const rows = d.sensors.filter((s) => s.station === st);
    const [xs, ys] = [rows.map((s) => s.temperature), rows.map((s) => s.humidity)];
    const [mx, my] = [mean(xs), mean(ys)];
    let [sxy, sxx, syy] = [0, 0, 0];
    xs.forEach((x, i) => {
      sxy += (x - mx) * (ys[i]! - my);
      sxx += (x - mx) ** 2;
      syy += (ys[i]! - my) ** 2;
    });
    return {
      kind: 'pearson', difficulty: 'hard',
      prompt: `Compute the Pearson correlation between temperature and humidity at station ${st} (sensors table), to 6 decimal places.`,
      code: `${DB}import math\nrows = list(db.execute("SELECT temperature, humidity FROM sensors WHERE station = ?", ("${st}",)))\nxs = [r[0] for r in rows]\nys = [r[1] for r in rows]\nmx = sum(xs) / len(xs)\nmy = sum(ys) / len(ys)\nsxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))\nsxx = sum((x - mx) ** 2 for x in xs)\nsyy = sum((y - my) ** 2 for y in ys)\nprint(repr(sxy / math.sqrt(sxx * syy)))\n`,
      truth: sxy / Math.sqrt(sxx * syy),
    };
  },
  (r, d) => {
    const [region, m1] = [r.pick(REGIONS), r.int(1, 9)];
    const m2 = m1 + r.int(1, 3);
    const rows = d.sales.filter((s) => s.region === region && s.month >= m1 && s.month <= m2);
    if (!rows.length) return undefined;
    // Revenue share of the single best-selling product (by revenue) in that slice, as a percentage.
    const by = new Map<string, number>();
    for (const s of rows) by.set(s.product, (by.get(s.product) ?? 0) + s.units * s.unit_price);
    const total = [...by.values()].reduce((a, b) => a + b, 0);
    return {
      kind: 'revenue_share', difficulty: 'hard',
      prompt: `For sales in the ${region} region in months ${m1} to ${m2} inclusive, what percentage of revenue (units × unit_price) comes from the product with the largest revenue? Give the percentage (0-100) to 4 decimals.`,
      code: `${DB}rows = list(db.execute("SELECT product, sum(units * unit_price) FROM sales WHERE region = ? AND month BETWEEN ? AND ? GROUP BY product", ("${region}", ${m1}, ${m2})))\ntotal = sum(v for _, v in rows)\nprint(repr(100 * max(v for _, v in rows) / total))\n`,
      truth: (100 * Math.max(...by.values())) / total,
    };
  },
];

export const TEMPLATE_COUNT = templates.length;

/** The i-th task: templates in rotation, parameters from `r`; undefined when a draw is rejected. */
export function sampleCiTask(r: Rng, d: Dataset, i: number): CiTask | undefined {
  return templates[i % templates.length]!(r, d);
}
