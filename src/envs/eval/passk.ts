// Unbiased pass@k estimator (Chen et al. 2021): with n attempts of which c passed,
//   pass@k = 1 - C(n-c, k) / C(n, k) = 1 - prod_{i=n-c+1}^{n} (1 - k/i),
// the probability that k attempts drawn without replacement from the n include a pass. The product
// form avoids huge binomials. Per-family numbers are the mean over tasks.
import { DsvError } from '../../errors.js';

export function passAtK(n: number, c: number, k: number): number {
  if (!(Number.isInteger(n) && Number.isInteger(c) && Number.isInteger(k)) || n < 1 || c < 0 || c > n || k < 1) {
    throw new DsvError(`pass@k needs integers n >= 1, 0 <= c <= n, k >= 1; got n=${n} c=${c} k=${k}`);
  }
  if (k > n) throw new DsvError(`pass@${k} needs at least ${k} attempts per task, got ${n}`);
  if (n - c < k) return 1;
  let p = 1;
  for (let i = n - c + 1; i <= n; i++) p *= 1 - k / i;
  return 1 - p;
}
