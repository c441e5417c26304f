import type { Http2ServerRequest } from 'node:http2';
import type { DownstreamRequest } from '../listener/downstream.js';

/** Facts read from the raw request headers in one allocation-free pass, before routing. */
export interface RequestScan {
  authority: string;
  hostCount: number;
  hasBody: boolean;
  contentLength: number; // -1 when absent
}

/** Scan the raw header list for Host/:authority and body framing. */
export function scanRequest(req: DownstreamRequest, out: RequestScan): void {
  const raw = req.rawHeaders;
  out.authority = '';
  out.hostCount = 0;
  out.contentLength = -1;
  let chunked = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    const len = name.length;
    if (len === 4 || len === 10) {
      const lower = name.toLowerCase();
      if (lower === 'host' || lower === ':authority') {
        if (lower === ':authority' || out.authority === '') out.authority = raw[i + 1];
        if (lower === 'host') out.hostCount++;
      }
    } else if (len === 14 && name.toLowerCase() === 'content-length') {
      out.contentLength = Number(raw[i + 1]);
    } else if (len === 17 && name.toLowerCase() === 'transfer-encoding') {
      chunked = true;
    }
  }
  if (req.httpVersionMajor === 2) {
    const stream = (req as Http2ServerRequest).stream;
    out.hasBody = !(stream.endAfterHeaders || stream.readableEnded);
    if (out.authority !== '' && out.hostCount === 1) out.hostCount = 0;
  } else {
    out.hasBody = chunked || out.contentLength > 0;
  }
}
