// The Python documentation's reStructuredText sources (python3.x-doc installs them as
// html/_sources/*.rst.txt next to the HTML): prose and code examples without HTML to strip.
import { debianTreeSource } from './debian-tree.js';

export const pythonDocSource = debianTreeSource({
  name: 'python-doc',
  package: /^python3\.\d+-doc$/,
  packageHint: 'python3.11-doc',
  root: (pkg) => `/usr/share/doc/${pkg.replace(/-doc$/, '')}/html/_sources`,
  include: /\.rst\.txt$/,
  // the changelog is a 2 MB list of issue titles, and whatsnew repeats it in prose
  exclude: /^(whatsnew\/changelog)/,
  licence: 'PSF-2.0 (Python Software Foundation License; see /usr/share/doc/python3.11-doc/copyright)',
  description: 'Python documentation (reStructuredText sources), one document per page',
  defaultBudgetBytes: Infinity,
  weight: 10,
});
