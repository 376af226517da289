// Typed errors of the synthesis pipeline (bad options, an unusable output directory or database).
import { DsvError } from '../../errors.js';

export class SynthError extends DsvError {}
