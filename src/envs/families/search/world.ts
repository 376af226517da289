// The search family's synthetic world: countries, cities, people and companies linked by relations
// (born in, founded, chief executive, headquartered in), and a corpus of documents about them: one
// encyclopedia-style page per entity (an infobox of "Key: Value" lines, then prose) plus news items
// that mention several entities, so searches return distractors. Names are unique by construction.
import { Rng } from '../../rng.js';

export interface Country { name: string; capital: string }
export interface City { name: string; country: string; founded: number; population: number }
export interface Person { name: string; born: number; birthCity: string; occupation: string }
export interface Company { name: string; founded: number; founder: string; ceo: string; hq: string; industry: string }
export interface Doc { id: number; title: string; kind: 'country' | 'city' | 'person' | 'company' | 'news'; text: string }

export interface SearchWorld {
  countries: Country[];
  cities: City[];
  people: Person[];
  companies: Company[];
  docs: Doc[];
  /** Indexes for the question generator. */
  personByName: Map<string, Person>;
  companyByName: Map<string, Company>;
  cityByName: Map<string, City>;
  companyByFounder: Map<string, Company>;
}

const ONSET = ['b', 'br', 'c', 'd', 'dr', 'f', 'g', 'gr', 'h', 'k', 'l', 'm', 'n', 'p', 'r', 's', 'st', 't', 'tr', 'v', 'z'];
const VOWEL = ['a', 'e', 'i', 'o', 'u', 'ai', 'ea', 'io'];
const CODA = ['', '', 'n', 'r', 'l', 's', 'th', 'nd', 'rk'];
const INDUSTRIES = ['shipping', 'software', 'textiles', 'mining', 'biotech', 'aviation', 'publishing', 'agriculture', 'robotics', 'banking'];
const OCCUPATIONS = ['engineer', 'chemist', 'economist', 'architect', 'lawyer', 'physician', 'investor', 'designer', 'geologist', 'teacher'];
const SUFFIX = ['Industries', 'Holdings', 'Labs', 'Group', 'Works', 'Systems', 'Partners', 'Dynamics'];

export const COUNTS = { countries: 12, cities: 84, people: 1500, companies: 520, news: 700 };

function word(r: Rng, syllables: number): string {
  let w = '';
  for (let i = 0; i < syllables; i++) w += r.pick(ONSET) + r.pick(VOWEL) + (i === syllables - 1 ? r.pick(CODA) : '');
  return w[0]!.toUpperCase() + w.slice(1);
}

function uniqueNames(r: Rng, n: number, make: () => string, taken: Set<string>): string[] {
  const out: string[] = [];
  while (out.length < n) {
    const s = make();
    if (taken.has(s)) continue;
    taken.add(s);
    out.push(s);
  }
  return out;
}

export function generateSearchWorld(seed: number): SearchWorld {
  const r = new Rng(seed).fork('search-world');
  // Every name (and every single-word name part used as a whole name) is distinct across kinds, so a
  // title identifies one entity.
  const taken = new Set<string>();
  const countryNames = uniqueNames(r, COUNTS.countries, () => word(r, 2) + 'ia', taken);
  const cityNames = uniqueNames(r, COUNTS.cities, () => word(r, r.int(2, 3)), taken);
  const cities: City[] = cityNames.map((name, i) => ({
    name,
    country: countryNames[i % countryNames.length]!,
    founded: r.int(800, 1850),
    population: 1000 * r.int(20, 4000),
  }));
  const countries: Country[] = countryNames.map((name, i) => ({ name, capital: cityNames[i]! }));
  const personNames = uniqueNames(r, COUNTS.people, () => `${word(r, r.int(1, 2))} ${word(r, r.int(2, 3))}`, taken);
  const people: Person[] = personNames.map((name) => ({ name, born: r.int(1930, 1995), birthCity: r.pick(cityNames), occupation: r.pick(OCCUPATIONS) }));
  // Founders are distinct people (a person founds at most one company); CEOs are other people.
  const order = r.shuffle(people);
  const founders = order.slice(0, COUNTS.companies);
  const ceos = order.slice(COUNTS.companies, 2 * COUNTS.companies);
  const companyNames = uniqueNames(r, COUNTS.companies, () => `${word(r, 2)} ${r.pick(SUFFIX)}`, taken);
  const companies: Company[] = companyNames.map((name, i) => ({
    name,
    founded: Math.max(founders[i]!.born + 22, r.int(1960, 2020)),
    founder: founders[i]!.name,
    ceo: ceos[i]!.name,
    hq: r.pick(cityNames),
    industry: r.pick(INDUSTRIES),
  }));

  const docs: Doc[] = [];
  const add = (title: string, kind: Doc['kind'], text: string) => docs.push({ id: docs.length + 1, title, kind, text });
  for (const c of countries) {
    add(c.name, 'country', `Type: country\nCapital: ${c.capital}\n\n${c.name} is a country whose capital is ${c.capital}.`);
  }
  for (const c of cities) {
    add(c.name, 'city', `Type: city\nCountry: ${c.country}\nFounded: ${c.founded}\nPopulation: ${c.population}\n\n` +
      `${c.name} is a city in ${c.country}, founded in ${c.founded}, with about ${c.population.toLocaleString('en-US')} inhabitants.`);
  }
  const founded = new Map(companies.map((c) => [c.founder, c]));
  const leads = new Map(companies.map((c) => [c.ceo, c]));
  for (const p of people) {
    const f = founded.get(p.name);
    const l = leads.get(p.name);
    const box = [`Type: person`, `Born: ${p.born}`, `Birthplace: ${p.birthCity}`, `Occupation: ${p.occupation}`];
    if (f) box.push(`Founder of: ${f.name}`);
    if (l) box.push(`Chief executive of: ${l.name}`);
    let prose = `${p.name} (born ${p.born} in ${p.birthCity}) is a ${p.occupation}.`;
    if (f) prose += ` In ${f.founded} ${p.name.split(' ')[0]} founded ${f.name}.`;
    if (l) prose += ` ${p.name} serves as chief executive of ${l.name}.`;
    add(p.name, 'person', `${box.join('\n')}\n\n${prose}`);
  }
  for (const c of companies) {
    add(c.name, 'company', `Type: company\nIndustry: ${c.industry}\nFounded: ${c.founded}\nFounder: ${c.founder}\nChief executive: ${c.ceo}\nHeadquarters: ${c.hq}\n\n` +
      `${c.name} is a ${c.industry} company headquartered in ${c.hq}. It was founded in ${c.founded} by ${c.founder} and is led by ${c.ceo}.`);
  }
  for (let i = 0; i < COUNTS.news; i++) {
    const [a, b] = r.sample(people, 2) as [Person, Person];
    const co = r.pick(companies);
    const city = r.pick(cities);
    const year = r.int(1990, 2024);
    add(`News ${i + 1}: ${co.name} in ${city.name}`, 'news',
      `Type: news\nDate: ${year}\n\nAt a ${co.industry} conference in ${city.name} in ${year}, ${a.name} and ${b.name} discussed the plans of ${co.name}. ` +
      `Observers from ${city.country} expected further announcements.`);
  }
  return {
    countries, cities, people, companies, docs,
    personByName: new Map(people.map((p) => [p.name, p])),
    companyByName: new Map(companies.map((c) => [c.name, c])),
    cityByName: new Map(cities.map((c) => [c.name, c])),
    companyByFounder: founded,
  };
}
