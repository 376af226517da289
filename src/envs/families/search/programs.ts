// Programs shipped in every search environment: the search tool (BM25 over the FTS5 corpus), the
// open tool, the reference solution (replays a question's steps through the tools, reading infobox
// fields of the opened pages) and the verifier (normalised string comparison).
import { SEARCH_SQL } from './corpus-db.js';

export const TOP_K = 10;

export const SUBMIT_TOOL = {
  name: 'submit_answer',
  description: 'Submit the final answer (a name or a year). Ends the task.',
  parameters: {
    type: 'object',
    properties: { answer: { anyOf: [{ type: 'string' }, { type: 'number' }], description: 'the answer' } },
    required: ['answer'],
    additionalProperties: false,
  },
};

export function searchTool(exampleQuery: string) {
  return {
    schema: {
      name: 'search',
      description: `Full-text search (BM25) over the document collection. Returns up to k (default ${TOP_K}, at most 20) hits as {id, title, snippet}, best first.`,
      parameters: {
        type: 'object',
        properties: { query: { type: 'string', minLength: 1 }, k: { type: 'integer', minimum: 1, maximum: 20 } },
        required: ['query'],
        additionalProperties: false,
      },
      examples: [{ query: exampleQuery }],
    },
    source: `"""search: BM25 ranking over the FTS5 corpus; every query word is quoted, so no FTS operators apply."""
import json
import os
import re
import sqlite3
import sys

a = json.load(sys.stdin)
words = re.findall(r"[A-Za-z0-9]+", a["query"])
if not words:
    sys.stderr.write("query has no searchable words\\n")
    sys.exit(2)
db = sqlite3.connect("file:" + os.environ["DSV32_DB"] + "?mode=ro", uri=True)
rows = db.execute(${JSON.stringify(SEARCH_SQL)}, (" OR ".join('"%s"' % w for w in words), a.get("k", ${TOP_K}))).fetchall()
print(json.dumps([{"id": r[0], "title": r[1], "snippet": r[2]} for r in rows], ensure_ascii=False))
`,
  };
}

export const OPEN_TOOL = {
  schema: {
    name: 'open',
    description: 'Open a document by id (from search results): returns {id, title, text}.',
    parameters: { type: 'object', properties: { id: { type: 'integer', minimum: 1 } }, required: ['id'], additionalProperties: false },
    examples: [{ id: 1 }],
  },
  source: `"""open: one document of the corpus by id."""
import json
import os
import sqlite3
import sys

a = json.load(sys.stdin)
db = sqlite3.connect("file:" + os.environ["DSV32_DB"] + "?mode=ro", uri=True)
r = db.execute("SELECT rowid, title, body FROM docs WHERE rowid = ?", (a["id"],)).fetchone()
if r is None:
    sys.stderr.write("no document with id %d\\n" % a["id"])
    sys.exit(2)
print(json.dumps({"id": r[0], "title": r[1], "text": r[2]}, ensure_ascii=False))
`,
};

export const SOLUTION = `"""Reference solution: replay the question's hops with search + open, reading infobox fields."""
from dsv32_env import call, submit, task


def infobox(text):
    box = {}
    for line in text.split("\\n\\n", 1)[0].splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            box[key] = value
    return box


def page(title):
    for hit in call("search", query=title):
        if hit["title"] == title:
            return infobox(call("open", id=hit["id"])["text"])
    raise SystemExit("no page titled %r among the search results" % title)


current = None
for step in task["params"]["steps"]:
    if "lookup" in step:
        current = page(step["lookup"])
    elif "follow" in step:
        current = page(current[step["follow"]])
    elif "find" in step:
        want = step["find"]["where"]
        matches = []
        for hit in call("search", query=step["find"]["query"]):
            box = infobox(call("open", id=hit["id"])["text"])
            if all(box.get(k) == v for k, v in want.items()):
                matches.append(box)
        if len(matches) != 1:
            raise SystemExit("expected one match for %r, found %d" % (want, len(matches)))
        current = matches[0]
    else:
        submit({"answer": current[step["read"]]})
`;

export const VERIFIER = `"""Search verifier: the answer must equal the expected one up to case, spacing and final punctuation."""
import json
import re
import sys


def norm(x):
    return re.sub(r"\\s+", " ", str(x)).strip().strip(".!\\"'").strip().casefold()


inp = json.load(sys.stdin)
ans = inp.get("answer")
want = inp["task"]["params"]["answer"]
if not isinstance(ans, dict) or not isinstance(ans.get("answer"), (str, int, float)) or isinstance(ans.get("answer"), bool):
    print(json.dumps({"score": 0, "reason": "answer must be {\\"answer\\": <name or year>}"}))
elif norm(ans["answer"]) == norm(want):
    print(json.dumps({"score": 1, "reason": "correct: %s" % want}))
else:
    print(json.dumps({"score": 0, "reason": "expected %r, got %r" % (want, ans["answer"])}))
`;
