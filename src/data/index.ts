// Public surface of the offline data pipeline: corpus sources, the corpus build (shards, manifest,
// data card), reading a corpus back, and the byte-level BPE tokenizer trainer.
export * from './errors.js';
export { buildCorpus, planSources, DATA_CARD_FILE, type BuildOptions, type BuildResult } from './build.js';
export { readManifest, verifyCorpus, readDocuments, MANIFEST_FILE, type CorpusManifest, type SplitName } from './manifest.js';
export { isValidation, orderKey } from './split.js';
export type { CorpusDocument, CorpusSource, SourceContext, SourceProbe } from './source.js';
export { ALL_SOURCES, sourceNames } from './sources/index.js';
export { ADDED_TOKENS, PAD, splitOnAddedTokens } from './special-tokens.js';
export { trainBpe, type BpeModel } from './bpe-trainer.js';
export { trainTokenizer, WordCounter, DEFAULT_VOCAB_SIZE } from './train-tokenizer.js';
export { trainCorpusTokenizer, type TokenizerReport } from './tokenizer-build.js';
export { buildTokenizerJson, type TokenizerJson } from './tokenizer-json.js';
export { heldOutAdditions, heldOutProblem, isHeldOut, randomProblem, explain, type ArithProblem } from './synthetic/arithmetic.js';
export { BpeEncoder } from './bpe-encoder.js';
export { packCorpus, readPackedTokens, PACK_FILE, type PackManifest } from './pack.js';
export { completionSpans, maskedIds } from './loss-mask.js';
