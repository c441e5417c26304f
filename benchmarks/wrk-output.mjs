// wrk's report (with --latency) as numbers: req/s, p50 and p99 in ms, requests, errors.

/** A wrk duration ("812.00us", "4.51ms", "1.02s") in milliseconds. */
const ms = (s) => (s.endsWith('us') ? parseFloat(s) / 1000 : s.endsWith('ms') ? parseFloat(s) : parseFloat(s) * 1000);

export function parseWrk(out) {
  const total = Number(/(\d+) requests in/.exec(out)[1]);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
  const socketErrors =
    /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/
      .exec(out)
      ?.slice(1)
      .reduce((s, n) => s + Number(n), 0) ?? 0;
  return {
    rps: parseFloat(/Requests\/sec:\s+([\d.]+)/.exec(out)[1]),
    // Anchored to the Latency Distribution's lines: the Thread Stats' "+/- Stdev" column (90.50%,
    // 98.99%) also ends in 50% or 99%, and an unanchored match there read "Req/Sec" as the latency.
    p50: ms(/^\s+50%\s+(\S+)/m.exec(out)[1]),
    p99: ms(/^\s+99%\s+(\S+)/m.exec(out)[1]),
    total,
    errors: non2xx + socketErrors,
  };
}
