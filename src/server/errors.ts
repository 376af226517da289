// Errors the server answers with, in the OpenAI shape `{error: {message, type, param, code}}`. Clients
// (the official SDKs, vLLM-era tooling) read `error.message` and switch on the HTTP status, so every
// rejection of bad input has a 4xx status and names the offending field in `param` and in the message.
import { DsvError } from '../errors.js';

export type ApiStatus = 400 | 403 | 404 | 409 | 413 | 429 | 500 | 503;

export class ApiError extends DsvError {
  constructor(
    readonly status: ApiStatus,
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
  }

  get type(): string {
    switch (this.status) {
      case 400:
      case 413:
        return 'invalid_request_error';
      case 404:
        return 'not_found_error';
      case 429:
        return 'rate_limit_error';
      case 503:
        return 'service_unavailable_error';
      default:
        return 'internal_error';
    }
  }

  body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

/** A 400 for one request field; `param` is the field's path as the client wrote it (`messages[2].content`). */
export function badField(param: string, message: string, code = 'invalid_value'): ApiError {
  return new ApiError(400, `${param}: ${message}`, param, code);
}
