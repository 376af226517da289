// Typed errors of the data pipeline. The CLI prints these verbatim (src/errors.ts), so each names the
// source, file or field at fault and what was expected.
import { DsvError } from '../errors.js';

/** A required corpus source is not installed: the message names the npm or Debian package to install. */
export class DataSourceMissingError extends DsvError {}

/** A source is installed but its files are not shaped as expected (moved, empty, unreadable). */
export class DataSourceFormatError extends DsvError {}

/** A corpus directory (manifest, shards) is missing, incomplete or fails its checksums. */
export class CorpusError extends DsvError {}

/** Tokenizer training was asked for something it cannot do (vocabulary too small, empty corpus). */
export class TokenizerTrainError extends DsvError {}

/** A build option is out of range (seed, byte budget, split fraction). */
export class DataOptionError extends DsvError {}
