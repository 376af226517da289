// Every repository of the code-agent family and the candidate tasks they give for a seed: each single
// injected bug and each pair of bugs of the same repository whose snippets can both be injected
// unambiguously. Validity (fail-to-pass > 0, pass-to-fail = 0) is measured later by running the tests.
import { Rng } from '../../rng.js';
import { FIXED_SPECS } from './repos.js';
import { JS_SPECS } from './repos-js.js';
import { PYTHON_SPECS } from './repos-python.js';
import type { Bug, RepoSpec, RepoTemplate } from './template.js';

export const REPO_SPECS: RepoSpec[] = [...FIXED_SPECS, ...PYTHON_SPECS, ...JS_SPECS];

export interface Candidate {
  tpl: RepoTemplate;
  edits: Bug[];
  /** The repository with the bugs injected. */
  buggy: Record<string, string>;
}

/** The repositories for a seed; each draws its variation from its own stream, independent of order. */
export function buildRepos(seed: number): RepoTemplate[] {
  const root = new Rng(seed).fork('code-agent/repos');
  return REPO_SPECS.map((spec) => {
    const t = spec.build(root.fork(spec.name));
    if (t.name !== spec.name || t.lang !== spec.lang) throw new Error(`repository spec ${spec.name} built ${t.name} (${t.lang})`);
    return t;
  });
}

/** Applies bugs in order; undefined when a snippet is missing or ambiguous before or after injection. */
export function inject(files: Record<string, string>, edits: Bug[]): Record<string, string> | undefined {
  const out = { ...files };
  for (const e of edits) {
    const src = out[e.path];
    if (src === undefined || e.fixed === e.buggy || src.split(e.fixed).length !== 2) return undefined;
    const buggy = src.replace(e.fixed, () => e.buggy);
    // The solution reverses the edit by locating the buggy snippet, so it must be unambiguous.
    if (buggy.split(e.buggy).length !== 2) return undefined;
    out[e.path] = buggy;
  }
  // Each gold snippet must also still be locatable for reversal in any order.
  for (const e of edits) if (out[e.path]!.split(e.buggy).length !== 2) return undefined;
  return out;
}

export function candidatesFor(repos: RepoTemplate[]): Candidate[] {
  const out: Candidate[] = [];
  const add = (tpl: RepoTemplate, edits: Bug[]) => {
    const buggy = inject(tpl.files, edits);
    if (buggy) out.push({ tpl, edits, buggy });
  };
  for (const tpl of repos) {
    tpl.bugs.forEach((b) => add(tpl, [b]));
    for (let i = 0; i < tpl.bugs.length; i++) for (let j = i + 1; j < tpl.bugs.length; j++) add(tpl, [tpl.bugs[i]!, tpl.bugs[j]!]);
  }
  return out;
}

export function codeAgentCandidates(seed: number): Candidate[] {
  return candidatesFor(buildRepos(seed));
}
