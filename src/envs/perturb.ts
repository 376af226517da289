// Automatic wrong answers for `env validate`: small structural edits of a correct answer that a sound
// verifier should reject. Edits are generic (no knowledge of the family): swap two leaf values of the
// same type found at different places (e.g. day 1's hotel with day 2's), nudge numbers, alter strings,
// flip booleans, drop/duplicate/reverse array items, delete object keys, and degenerate answers. Some
// edits may be harmless (reordering an unordered list), which is why validation asks for at least two
// rejections rather than all.
import { isDeepStrictEqual } from 'node:util';
import { Rng } from './rng.js';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Path = Array<string | number>;

function leaves(v: Json, path: Path = [], out: Array<{ path: Path; value: Json }> = []) {
  if (Array.isArray(v)) v.forEach((x, i) => leaves(x, [...path, i], out));
  else if (v !== null && typeof v === 'object') for (const k of Object.keys(v)) leaves(v[k]!, [...path, k], out);
  else out.push({ path, value: v });
  return out;
}

function containers(v: Json, path: Path = [], out: Array<{ path: Path; value: Json }> = []) {
  if (Array.isArray(v) || (v !== null && typeof v === 'object')) {
    out.push({ path, value: v });
    if (Array.isArray(v)) v.forEach((x, i) => containers(x, [...path, i], out));
    else for (const k of Object.keys(v)) containers(v[k]!, [...path, k], out);
  }
  return out;
}

function setAt(root: Json, path: Path, value: Json | undefined): Json {
  const copy = structuredClone(root);
  if (!path.length) return value === undefined ? null : value;
  let cur = copy as Record<string | number, Json> | Json[];
  for (const k of path.slice(0, -1)) cur = (cur as Record<string | number, Json>)[k] as Record<string | number, Json>;
  const last = path[path.length - 1]!;
  if (value === undefined) {
    if (Array.isArray(cur)) cur.splice(last as number, 1);
    else delete (cur as Record<string, Json>)[last];
  } else (cur as Record<string | number, Json>)[last] = value;
  return copy;
}

export interface Perturbation {
  description: string;
  answer: unknown;
}

/** Up to `max` distinct wrong variants of `answer`, chosen deterministically from `seed`. */
export function perturbAnswer(answer: unknown, max = 8, seed = 1): Perturbation[] {
  const a = JSON.parse(JSON.stringify(answer ?? null)) as Json;
  const swaps: Perturbation[] = [];
  const edits: Perturbation[] = [];
  const ls = leaves(a);
  const show = (p: Path) => (p.length ? p.join('.') : '(root)');

  for (let i = 0; i < ls.length; i++) {
    for (let j = i + 1; j < ls.length; j++) {
      const x = ls[i]!;
      const y = ls[j]!;
      if (typeof x.value !== typeof y.value || x.value === y.value) continue;
      const last = (p: Path) => p[p.length - 1];
      // Prefer swaps of like fields (same key in different records): those look plausible.
      if (last(x.path) !== last(y.path)) continue;
      swaps.push({ description: `swap ${show(x.path)} and ${show(y.path)}`, answer: setAt(setAt(a, x.path, y.value), y.path, x.value) });
    }
  }
  for (const { path, value } of ls) {
    if (typeof value === 'number') {
      edits.push({ description: `${show(path)} + 1`, answer: setAt(a, path, value + 1) });
      edits.push({ description: `${show(path)} * 2 + 7`, answer: setAt(a, path, value * 2 + 7) });
    } else if (typeof value === 'string') {
      const other = ls.find((l) => typeof l.value === 'string' && l.value !== value && l.path.join() !== path.join());
      if (other) edits.push({ description: `${show(path)} := ${show(other.path)}`, answer: setAt(a, path, other.value) });
      edits.push({ description: `${show(path)} altered`, answer: setAt(a, path, value ? `${value} X` : 'X') });
    } else if (typeof value === 'boolean') {
      edits.push({ description: `${show(path)} flipped`, answer: setAt(a, path, !value) });
    }
  }
  for (const { path, value } of containers(a)) {
    if (Array.isArray(value)) {
      if (value.length) edits.push({ description: `drop last of ${show(path)}`, answer: setAt(a, path, value.slice(0, -1)) });
      if (value.length) edits.push({ description: `duplicate first of ${show(path)}`, answer: setAt(a, path, [value[0]!, ...value]) });
      if (value.length > 1) edits.push({ description: `reverse ${show(path)}`, answer: setAt(a, path, [...value].reverse()) });
    } else if (value && typeof value === 'object') {
      for (const k of Object.keys(value)) edits.push({ description: `delete ${show([...path, k])}`, answer: setAt(a, [...path, k], undefined) });
    }
  }
  edits.push({ description: 'empty object', answer: {} });
  edits.push({ description: 'null', answer: null });

  // Interleave the two pools so both kinds are represented, then sample deterministically.
  const r = new Rng(seed);
  const pick = (pool: Perturbation[], n: number) => r.sample(pool, n);
  const half = Math.ceil(max / 2);
  const chosen = [...pick(swaps, half), ...pick(edits, max)];
  const out: Perturbation[] = [];
  for (const c of chosen) {
    if (out.length >= max) break;
    if (isDeepStrictEqual(c.answer, a) || out.some((o) => isDeepStrictEqual(o.answer, c.answer))) continue;
    out.push(c);
  }
  return out;
}
