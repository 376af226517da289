// The BSD fortune files (Debian `fortunes`, `fortunes-min`): quotations separated by lines holding
// only "%". One document per file with the separators turned into blank lines; the ASCII-art files
// are left out (pictures, and backspace overstriking that is noise to a language model).
import { debianTreeSource } from './debian-tree.js';

export const fortunesSource = debianTreeSource({
  name: 'fortunes',
  package: /^fortunes(-min)?$/,
  packageHint: 'fortunes',
  root: () => '/usr/share/games/fortunes',
  include: /^[a-z-]+$/,
  exclude: /^(art|ascii-art)$|\.(dat|u8)$/,
  licence: 'BSD-4-Clause-UC (the BSD fortune files; see /usr/share/doc/fortunes-min/copyright)',
  description: 'Quotations from the BSD fortune files, one document per topic file',
  defaultBudgetBytes: Infinity,
  weight: 2,
  clean: (text) => text.replace(/[^\n]\x08/g, '').replace(/^%\n/gm, '\n').trim() + '\n',
});
