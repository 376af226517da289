// The Linux kernel's Documentation/ tree as Debian's linux-doc-6.x installs it (gzip-compressed
// reStructuredText and plain text). Translations are left out: the rest of the corpus is English and
// the Chinese/Japanese/Korean pages are a few percent of bytes but many rare characters.
import { debianTreeSource } from './debian-tree.js';

export const linuxDocSource = debianTreeSource({
  name: 'linux-doc',
  package: /^linux-doc-\d+\.\d+$/,
  packageHint: 'linux-doc-6.1',
  root: (pkg) => `/usr/share/doc/${pkg}/Documentation`,
  include: /\.(rst|txt)(\.gz)?$/,
  exclude: /^translations(\/|$)/,
  licence: 'GPL-2.0 (Linux kernel documentation)',
  description: 'Linux kernel documentation (reStructuredText), one document per file',
  defaultBudgetBytes: 16 * 2 ** 20,
  weight: 16,
});
