// Multi-hop questions over the search world. A question is a chain of steps the reference solution
// replays through the tools: look an entity up by name, follow an infobox field to the next entity,
// read the final field; or find an entity by description (search, then filter by infobox fields).
// Forward chains follow single-valued relations between uniquely named entities, so their answers are
// unique by construction; "find" steps are kept only when exactly one entity matches in the world.
import { Rng } from '../../rng.js';
import type { SearchWorld } from './world.js';

export type Step =
  | { lookup: string }
  | { follow: string }
  | { read: string }
  | { find: { query: string; where: Record<string, string> } };

export interface Question {
  kind: string;
  hops: number;
  prompt: string;
  steps: Step[];
  answer: string;
  /** Searches the solution will make, with the title each must surface. */
  searches: Array<{ query: string; title: string }>;
}

type Maker = (r: Rng, w: SearchWorld) => Question | undefined;

const makers: Maker[] = [
  (r, w) => {
    const c = r.pick(w.companies);
    return {
      kind: 'founder_company_year', hops: 2,
      prompt: `In what year was the company founded by ${c.founder} established?`,
      steps: [{ lookup: c.founder }, { follow: 'Founder of' }, { read: 'Founded' }],
      answer: String(c.founded),
      searches: [{ query: c.founder, title: c.founder }, { query: c.name, title: c.name }],
    };
  },
  (r, w) => {
    const c = r.pick(w.companies);
    const f = w.personByName.get(c.founder)!;
    const city = w.cityByName.get(f.birthCity)!;
    return {
      kind: 'founder_birth_country', hops: 3,
      prompt: `In which country was the founder of ${c.name} born?`,
      steps: [{ lookup: c.name }, { follow: 'Founder' }, { follow: 'Birthplace' }, { read: 'Country' }],
      answer: city.country,
      searches: [{ query: c.name, title: c.name }, { query: f.name, title: f.name }, { query: city.name, title: city.name }],
    };
  },
  (r, w) => {
    const c = r.pick(w.companies);
    const ceo = w.personByName.get(c.ceo)!;
    return {
      kind: 'ceo_birthplace_via_founder', hops: 3,
      prompt: `In which city was the chief executive of the company founded by ${c.founder} born?`,
      steps: [{ lookup: c.founder }, { follow: 'Founder of' }, { follow: 'Chief executive' }, { read: 'Birthplace' }],
      answer: ceo.birthCity,
      searches: [{ query: c.founder, title: c.founder }, { query: c.name, title: c.name }, { query: ceo.name, title: ceo.name }],
    };
  },
  (r, w) => {
    const c = r.pick(w.companies);
    // Unique description: no other company shares this industry and headquarters city.
    if (w.companies.filter((x) => x.industry === c.industry && x.hq === c.hq).length !== 1) return undefined;
    const query = `${c.industry} company headquartered in ${c.hq}`;
    return {
      kind: 'ceo_by_industry_city', hops: 2,
      prompt: `Who is the chief executive of the ${c.industry} company headquartered in ${c.hq}?`,
      steps: [{ find: { query, where: { Type: 'company', Industry: c.industry, Headquarters: c.hq } } }, { read: 'Chief executive' }],
      answer: c.ceo,
      searches: [{ query, title: c.name }],
    };
  },
  (r, w) => {
    const c = r.pick(w.companies);
    const city = w.cityByName.get(c.hq)!;
    const country = w.countries.find((x) => x.name === city.country)!;
    return {
      kind: 'hq_country_capital', hops: 3,
      prompt: `What is the capital of the country in which ${c.name} has its headquarters?`,
      steps: [{ lookup: c.name }, { follow: 'Headquarters' }, { follow: 'Country' }, { read: 'Capital' }],
      answer: country.capital,
      searches: [{ query: c.name, title: c.name }, { query: city.name, title: city.name }, { query: country.name, title: country.name }],
    };
  },
];

export const QUESTION_KINDS = makers.length;

export function sampleQuestion(r: Rng, w: SearchWorld, i: number): Question | undefined {
  return makers[i % makers.length]!(r, w);
}
