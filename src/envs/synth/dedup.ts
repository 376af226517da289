// Task de-duplication key: a prompt is normalised (Unicode NFKC, lower case, punctuation dropped,
// whitespace collapsed) and hashed, so re-worded copies that differ only in spacing, case or
// punctuation collide while different numbers or names do not.
import { createHash } from 'node:crypto';

export function normalisePrompt(prompt: string): string {
  return prompt
    .normalize('NFKC')
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s]+/gu, ' ')
    .replace(/\s+/g, ' ')
    .trim();
}

export function promptHash(prompt: string): string {
  return createHash('sha256').update(normalisePrompt(prompt)).digest('hex');
}
