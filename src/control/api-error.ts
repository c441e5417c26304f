/**
 * A refused request or change, with the HTTP status and JSON body an API answers it with. Raised by
 * the config path (validation 400, If-Match 412, a shared-store conflict 409 or outage 503, a drain
 * 503) as much as by the admin and hub APIs themselves, so it lives beside the config service.
 */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly body?: unknown,
  ) {
    super(message);
  }
}
