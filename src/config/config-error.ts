/** One validation error: a JS-style field path (`clusters[2].endpoints[0].address`) and a message. */
export interface ConfigError {
  path: string;
  message: string;
}
