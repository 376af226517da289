// Programs shipped in every code-interpreter environment: the run_python tool (runs the agent's code
// in a child process inside the tool's own sandbox, on a private copy of the data), list_tables, and
// the reference solution, which runs the task's Python reference program through run_python.

export const SUBMIT_TOOL = {
  name: 'submit_answer',
  description: 'Submit the final answer: a number for numeric questions, a string for names. Ends the task.',
  parameters: {
    type: 'object',
    properties: { answer: { anyOf: [{ type: 'number' }, { type: 'string' }], description: 'the answer' } },
    required: ['answer'],
    additionalProperties: false,
  },
};

/** Wall-clock limit of one snippet, inside the tool's own sandbox limit. */
export const SNIPPET_TIMEOUT_S = 20;
const OUTPUT_CAP = 20000;

export const RUN_PYTHON = {
  schema: {
    name: 'run_python',
    description:
      'Run a Python 3 program and return its stdout, stderr and exit code. The dataset is an SQLite file ' +
      '"data.sqlite" in the working directory (tables sales, sensors, employees; list_tables describes them); ' +
      `changes to it are discarded after the run. Standard library only; ${SNIPPET_TIMEOUT_S} s limit; print what you need.`,
    parameters: {
      type: 'object',
      properties: { code: { type: 'string', description: 'the complete program' } },
      required: ['code'],
      additionalProperties: false,
    },
    examples: [{ code: 'import sqlite3\nprint(sqlite3.connect("data.sqlite").execute("SELECT count(*) FROM sales").fetchone()[0])' }],
  },
  source: `"""run_python: runs the agent's program in a child process on a scratch copy of the data."""
import json
import os
import shutil
import subprocess
import sys

args = json.load(sys.stdin)
# The sandbox gives every run a fresh /work tmpfs: copying the database there means a program that
# writes to it cannot change the environment's state.
shutil.copyfile(os.environ["DSV32_DB"], "data.sqlite")
with open("main.py", "w", encoding="utf-8") as f:
    f.write(args["code"])
CAP = ${OUTPUT_CAP}


def clip(s):
    return s if len(s) <= CAP else s[:CAP] + "\\n[... %d more characters]" % (len(s) - CAP)


try:
    r = subprocess.run([sys.executable, "-s", "-B", "main.py"], capture_output=True, timeout=${SNIPPET_TIMEOUT_S},
                       env={"PATH": "/usr/bin:/bin", "HOME": os.getcwd(), "PYTHONHASHSEED": "0"})
    out = {"stdout": clip(r.stdout.decode("utf-8", "replace")), "stderr": clip(r.stderr.decode("utf-8", "replace")),
           "exit_code": r.returncode, "timed_out": False}
except subprocess.TimeoutExpired as e:
    out = {"stdout": clip((e.stdout or b"").decode("utf-8", "replace")), "stderr": clip((e.stderr or b"").decode("utf-8", "replace")),
           "exit_code": None, "timed_out": True}
print(json.dumps(out, ensure_ascii=False))
`,
};

export const LIST_TABLES = {
  schema: {
    name: 'list_tables',
    description: 'Describe the dataset: every table with its columns, types, row count and the first three rows.',
    parameters: { type: 'object', properties: {}, additionalProperties: false },
    examples: [{}],
  },
  source: `"""list_tables: schema, size and a preview of each table of the dataset."""
import json
import os
import sqlite3

db = sqlite3.connect("file:" + os.environ["DSV32_DB"] + "?mode=ro", uri=True)
out = []
for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"):
    cols = [{"name": c[1], "type": c[2]} for c in db.execute("PRAGMA table_info(%s)" % name)]
    cur = db.execute("SELECT * FROM %s ORDER BY rowid LIMIT 3" % name)
    out.append({"table": name, "columns": cols, "rows": db.execute("SELECT count(*) FROM %s" % name).fetchone()[0],
                "preview": [list(r) for r in cur.fetchall()]})
print(json.dumps(out))
`,
};

export const SOLUTION = `"""Reference solution: run the task's reference program through run_python and submit its last line."""
from dsv32_env import call, submit, task

p = task["params"]
r = call("run_python", code=p["reference_code"])
if r["exit_code"] != 0:
    raise SystemExit("reference program failed: " + r["stderr"])
last = r["stdout"].strip().splitlines()[-1]
if p["answer_type"] == "string":
    submit({"answer": last})
else:
    v = float(last)
    submit({"answer": int(v) if v.is_integer() and "." not in last and "e" not in last else v})
`;
