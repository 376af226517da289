// Generates TypeScript constants from the real CUDA headers: a C program that prints every wanted enum
// value, macro and struct size is compiled with the host C compiler against the header and run, so no
// value is ever copied by hand.
//   node scripts/gen-cuda-consts.mjs                 cuda.h (+ library_types.h) from nvcc's include dir
//                                                    → src/backend/cuda/cuda-consts.ts
//   node scripts/gen-cuda-consts.mjs --lib cublaslt [--out FILE] [--js-out FILE]
//                                                    cublasLt.h (searched under CUDA_HOME, nvcc's dir and
//                                                    the nvidia pip wheels) → src/backend/cuda/cublaslt-consts.ts
// Names absent from the header at hand (older or newer CUDA) are left out and listed in MISSING, so
// callers can feature-test (e.g. block-scaled FP8 modes) instead of guessing.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync, readdirSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const opt = (n, d) => (args.includes(n) ? args[args.indexOf(n) + 1] : d);
const lib = opt('--lib', 'cuda');

const SPECS = {
  cuda: {
    header: ['cuda.h', 'library_types.h'],
    out: 'src/backend/cuda/cuda-consts.ts',
    values: [
      'CUDA_VERSION',
      'CUDA_SUCCESS', 'CUDA_ERROR_INVALID_VALUE', 'CUDA_ERROR_OUT_OF_MEMORY', 'CUDA_ERROR_NOT_INITIALIZED',
      'CUDA_ERROR_NO_DEVICE', 'CUDA_ERROR_NOT_READY', 'CUDA_ERROR_NOT_FOUND', 'CUDA_ERROR_ILLEGAL_ADDRESS',
      'CUDA_ERROR_STREAM_CAPTURE_INVALIDATED',
      'CU_STREAM_DEFAULT', 'CU_STREAM_NON_BLOCKING',
      'CU_EVENT_DEFAULT', 'CU_EVENT_BLOCKING_SYNC', 'CU_EVENT_DISABLE_TIMING',
      'CU_STREAM_CAPTURE_MODE_GLOBAL', 'CU_STREAM_CAPTURE_MODE_THREAD_LOCAL', 'CU_STREAM_CAPTURE_MODE_RELAXED',
      'CU_STREAM_CAPTURE_STATUS_NONE', 'CU_STREAM_CAPTURE_STATUS_ACTIVE', 'CU_STREAM_CAPTURE_STATUS_INVALIDATED',
      'CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT', 'CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR',
      'CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR', 'CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN',
      'CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE', 'CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK',
      'CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES', 'CU_FUNC_ATTRIBUTE_NUM_REGS', 'CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES',
      'CU_GRAPH_EXEC_UPDATE_SUCCESS',
      'CU_MEMHOSTALLOC_PORTABLE',
      'CUDA_R_32F', 'CUDA_R_64F', 'CUDA_R_16F', 'CUDA_R_16BF', 'CUDA_R_8F_E4M3', 'CUDA_R_8F_E5M2', 'CUDA_R_32I', 'CUDA_R_8I',
    ],
    sizes: { SIZEOF_CUgraphExecUpdateResultInfo: 'sizeof(CUgraphExecUpdateResultInfo)', SIZEOF_CUdeviceptr: 'sizeof(CUdeviceptr)' },
  },
  cublaslt: {
    header: ['cublasLt.h'],
    out: 'src/backend/cuda/cublaslt-consts.ts',
    values: [
      'CUBLAS_VER_MAJOR', 'CUBLAS_VER_MINOR', 'CUBLAS_VER_PATCH',
      'CUBLAS_STATUS_SUCCESS', 'CUBLAS_STATUS_NOT_INITIALIZED', 'CUBLAS_STATUS_INVALID_VALUE', 'CUBLAS_STATUS_NOT_SUPPORTED',
      'CUBLAS_STATUS_EXECUTION_FAILED', 'CUBLAS_STATUS_ARCH_MISMATCH',
      'CUBLAS_COMPUTE_32F', 'CUBLAS_COMPUTE_32F_FAST_TF32', 'CUBLAS_COMPUTE_64F',
      'CUBLAS_OP_N', 'CUBLAS_OP_T',
      'CUBLASLT_MATMUL_DESC_TRANSA', 'CUBLASLT_MATMUL_DESC_TRANSB', 'CUBLASLT_MATMUL_DESC_FAST_ACCUM',
      'CUBLASLT_MATMUL_DESC_A_SCALE_POINTER', 'CUBLASLT_MATMUL_DESC_B_SCALE_POINTER', 'CUBLASLT_MATMUL_DESC_D_SCALE_POINTER',
      'CUBLASLT_MATMUL_DESC_A_SCALE_MODE', 'CUBLASLT_MATMUL_DESC_B_SCALE_MODE',
      'CUBLASLT_MATMUL_MATRIX_SCALE_SCALAR_32F', 'CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F', 'CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F',
      'CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT', 'CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET',
      'CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES',
    ],
    sizes: {
      SIZEOF_cublasLtMatmulAlgo_t: 'sizeof(cublasLtMatmulAlgo_t)',
      SIZEOF_cublasLtMatmulHeuristicResult_t: 'sizeof(cublasLtMatmulHeuristicResult_t)',
      OFFSETOF_HEURISTIC_workspaceSize: 'offsetof(cublasLtMatmulHeuristicResult_t, workspaceSize)',
      OFFSETOF_HEURISTIC_state: 'offsetof(cublasLtMatmulHeuristicResult_t, state)',
    },
  },
};
const spec = SPECS[lib];
if (!spec) {
  console.error(`gen-cuda-consts: --lib must be one of ${Object.keys(SPECS).join(', ')}, got '${lib}'`);
  process.exit(2);
}
spec.values.push('CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES', 'CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES',
  'CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES', 'CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES');
if (lib !== 'cublaslt') spec.values.splice(-4);
if (args.includes('--declare-only')) {
  // Types only, no values: lets TypeScript compile where the header is absent. The values come from a
  // run of this script on a machine that has the header (the H200 run writes the .js twin into dist/).
  const out = resolve(root, opt('--out', spec.out));
  writeFileSync(out, [
    `// DECLARATIONS ONLY (scripts/gen-cuda-consts.mjs --lib ${lib} --declare-only): no ${spec.header[0]} was at hand.`,
    '// Regenerate on a machine with the header; until then every value is undefined at run time.',
    ...spec.values.map((n) => `export declare const ${n}: number;`),
    ...Object.keys(spec.sizes).map((n) => `export declare const ${n}: number;`),
    'export declare const MISSING: readonly string[];', '',
  ].join('\n'));
  console.log(`gen-cuda-consts: declarations only → ${out}`);
  process.exit(0);
}

function sh(cmd, argv) {
  try {
    return execFileSync(cmd, argv, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch {
    return '';
  }
}

/** Include directories in which to look for the header, most specific first. */
function includeDirs() {
  const dirs = [];
  if (process.env.CUDA_INCLUDE) dirs.push(...process.env.CUDA_INCLUDE.split(':'));
  // nvcc knows its own include dir; --dryrun prints it without compiling anything
  const dry = sh(process.env.NVCC ?? 'nvcc', ['--dryrun', '-x', 'cu', '-c', '/dev/null', '-o', '/dev/null']) ||
    (() => { try { execFileSync(process.env.NVCC ?? 'nvcc', ['--dryrun', '-x', 'cu', '-c', '/dev/null', '-o', '/dev/null'], { stdio: 'pipe' }); } catch (e) { return String(e.stderr ?? ''); } return ''; })();
  for (const m of dry.matchAll(/-I"?([^"\s]+)"?/g)) dirs.push(m[1]);
  const home = process.env.CUDA_HOME ?? '/usr/local/cuda';
  dirs.push(join(home, 'include'), join(home, 'targets/x86_64-linux/include'), '/usr/local/cuda/include');
  // pip wheels (nvidia-cublas and friends) ship headers under site-packages/nvidia/*/include
  for (const py of ['python3']) {
    const sp = sh(py, ['-c', 'import site,sys; print("\\n".join(site.getsitepackages()+[site.getusersitepackages()]))']);
    for (const s of sp.split('\n').filter(Boolean)) {
      const nv = join(s, 'nvidia');
      if (!existsSync(nv)) continue;
      for (const d of readdirSync(nv)) dirs.push(join(nv, d, 'include'));
    }
  }
  return [...new Set(dirs)].filter((d) => existsSync(d));
}

const dirs = includeDirs();
const first = dirs.find((d) => existsSync(join(d, spec.header[0])));
if (!first) {
  console.error(`gen-cuda-consts: ${spec.header[0]} not found in: ${dirs.join(', ') || '(no include dirs)'}`);
  process.exit(1);
}
const cc = ['cc', 'gcc', 'clang'].find((c) => sh('sh', ['-c', `command -v ${c}`]).trim());
if (!cc) {
  console.error('gen-cuda-consts: no C compiler (cc, gcc or clang) on PATH');
  process.exit(1);
}

const work = mkdtempSync(join(tmpdir(), 'gencc-'));
let names = [...spec.values];
const missing = [];
let output = '';
for (let attempt = 0; attempt < 50; attempt++) {
  const src = [
    '#include <stdio.h>', '#include <stddef.h>', ...spec.header.map((h) => `#include <${h}>`), 'int main(void) {',
    ...names.map((n) => `  printf("${n} %lld\\n", (long long)(${n}));`),
    ...Object.entries(spec.sizes).map(([k, e]) => `  printf("${k} %lld\\n", (long long)(${e}));`),
    '  return 0;', '}',
  ].join('\n');
  writeFileSync(join(work, 'c.c'), src);
  try {
    execFileSync(cc, ['-o', join(work, 'c'), join(work, 'c.c'), ...dirs.flatMap((d) => ['-I', d])], { stdio: 'pipe' });
    output = execFileSync(join(work, 'c'), { encoding: 'utf8' });
    break;
  } catch (e) {
    const err = String(e.stderr ?? e.message);
    const undeclared = [...err.matchAll(/'([A-Za-z_0-9]+)' undeclared/g)].map((m) => m[1]).filter((n) => names.includes(n));
    if (!undeclared.length) {
      console.error(`gen-cuda-consts: compiling the probe against ${first}/${spec.header[0]} failed:\n${err}`);
      process.exit(1);
    }
    for (const n of undeclared) missing.push(n);
    names = names.filter((n) => !undeclared.includes(n));
  }
}

const lines = output.trim().split('\n').map((l) => l.split(' '));
const version = lines.find(([n]) => n === 'CUDA_VERSION' || n === 'CUBLAS_VER_MAJOR');
const body = [
  `// GENERATED by scripts/gen-cuda-consts.mjs --lib ${lib} from ${join(first, spec.header[0])}`,
  `// on ${process.env.GEN_HOST_NOTE ?? 'this machine'}; do not edit. Regenerate with the script.`,
  ...lines.map(([n, v]) => `export const ${n} = ${v};`),
  `/** Names the header at generation time did not define. */`,
  `export const MISSING: readonly string[] = ${JSON.stringify(missing.sort())};`,
  '',
].join('\n');
const out = resolve(root, opt('--out', spec.out));
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, body);
const jsOut = opt('--js-out', null);
if (jsOut) {
  // plain JS twin for a prebuilt dist/ (the H200 run regenerates cuBLASLt values without tsc)
  writeFileSync(resolve(jsOut), body.replace('export const MISSING: readonly string[] =', 'export const MISSING ='));
}
console.log(`gen-cuda-consts: ${lines.length} values from ${spec.header[0]} (${version ? version.join(' ') : ''}) → ${out}` +
  (missing.length ? `; missing: ${missing.join(', ')}` : ''));
