// The code-interpreter family's dataset: three small tables (sales, sensor readings, employees) drawn
// from a seed and stored in the environment's SQLite database. Values are integers or one-decimal
// numbers so that sums are exact in binary floating point up to the last few ulps.
import Database from 'better-sqlite3';
import { Rng } from '../../rng.js';

export const REGIONS = ['North', 'South', 'East', 'West', 'Central'] as const;
export const PRODUCTS = ['Widget', 'Gadget', 'Sprocket', 'Gizmo', 'Doohickey', 'Flange'] as const;
export const STATIONS = ['Alder', 'Birch', 'Cedar', 'Dogwood', 'Elm', 'Fir'] as const;
export const DEPARTMENTS = ['Engineering', 'Sales', 'Support', 'Finance', 'Legal', 'Research'] as const;

export interface SaleRow { id: number; region: string; product: string; month: number; units: number; unit_price: number }
export interface SensorRow { id: number; station: string; day: number; temperature: number; humidity: number }
export interface EmployeeRow { id: number; name: string; department: string; salary: number; age: number; hired_year: number }

export interface Dataset {
  sales: SaleRow[];
  sensors: SensorRow[];
  employees: EmployeeRow[];
}

const FIRST = ['Ada', 'Bo', 'Cy', 'Di', 'Ed', 'Flo', 'Gus', 'Hal', 'Ivy', 'Jo', 'Kit', 'Lu', 'Max', 'Ned', 'Oz', 'Pia', 'Quin', 'Ros', 'Sal', 'Tam'];
const LAST = ['Archer', 'Baker', 'Cole', 'Dunn', 'Eames', 'Frost', 'Grant', 'Hale', 'Irwin', 'Judd', 'Kemp', 'Lowe', 'Marsh', 'Noble', 'Orr'];

const round1 = (x: number) => Math.round(x * 10) / 10;

export function generateDataset(seed: number): Dataset {
  const r = new Rng(seed).fork('code-interpreter-data');
  const sales: SaleRow[] = [];
  for (let i = 1; i <= 480; i++) {
    sales.push({ id: i, region: r.pick(REGIONS), product: r.pick(PRODUCTS), month: r.int(1, 12), units: r.int(1, 250), unit_price: round1(2 + r.next() * 98) });
  }
  const sensors: SensorRow[] = [];
  let id = 1;
  for (const s of STATIONS) {
    const base = r.int(-5, 25);
    for (let day = 1; day <= 60; day++) {
      const temperature = round1(base + 8 * Math.sin((day / 60) * 2 * Math.PI) + (r.next() - 0.5) * 6);
      sensors.push({ id: id++, station: s, day, temperature, humidity: round1(Math.min(100, Math.max(5, 70 - temperature + (r.next() - 0.5) * 30))) });
    }
  }
  const employees: EmployeeRow[] = [];
  for (let i = 1; i <= 240; i++) {
    employees.push({ id: i, name: `${r.pick(FIRST)} ${r.pick(LAST)}`, department: r.pick(DEPARTMENTS), salary: 1000 * r.int(35, 180), age: r.int(21, 66), hired_year: r.int(1995, 2024) });
  }
  return { sales, sensors, employees };
}

export function writeDatasetDb(d: Dataset, path: string): void {
  const db = new Database(path);
  try {
    db.exec(`
      CREATE TABLE sales (id INTEGER PRIMARY KEY, region TEXT NOT NULL, product TEXT NOT NULL, month INTEGER NOT NULL,
        units INTEGER NOT NULL, unit_price REAL NOT NULL);
      CREATE TABLE sensors (id INTEGER PRIMARY KEY, station TEXT NOT NULL, day INTEGER NOT NULL, temperature REAL NOT NULL,
        humidity REAL NOT NULL);
      CREATE TABLE employees (id INTEGER PRIMARY KEY, name TEXT NOT NULL, department TEXT NOT NULL, salary INTEGER NOT NULL,
        age INTEGER NOT NULL, hired_year INTEGER NOT NULL);
    `);
    db.transaction(() => {
      const s = db.prepare('INSERT INTO sales VALUES (?, ?, ?, ?, ?, ?)');
      for (const x of d.sales) s.run(x.id, x.region, x.product, x.month, x.units, x.unit_price);
      const t = db.prepare('INSERT INTO sensors VALUES (?, ?, ?, ?, ?)');
      for (const x of d.sensors) t.run(x.id, x.station, x.day, x.temperature, x.humidity);
      const e = db.prepare('INSERT INTO employees VALUES (?, ?, ?, ?, ?, ?)');
      for (const x of d.employees) e.run(x.id, x.name, x.department, x.salary, x.age, x.hired_year);
    })();
  } finally {
    db.close();
  }
}
