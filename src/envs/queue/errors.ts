// Typed errors of the job queue. Messages name the argument (queue URL, job kind) and what was expected.
import { DsvError } from '../../errors.js';

/** A --queue URL, queue option or job payload is malformed. */
export class QueueConfigError extends DsvError {}

/** A job failed for good (its handler threw on every permitted try). */
export class JobFailedError extends DsvError {}

/** Redis did not answer the connection check before a command started (exit 2, nothing was queued). */
export class QueueUnreachableError extends DsvError {}

/** A connected worker or submitter lost Redis and it did not come back within the reconnect window. */
export class QueueConnectionLostError extends DsvError {}
