import { request } from 'node:http';
import { connect } from 'node:net';

/**
 * One TCP connection attempt: resolves true when the port accepts within the
 * timeout; with an exchange, once connected it writes `send` (if any) and is
 * true only when the answer contains `expect` before the timeout (counted from
 * the last byte received) or the server closes.
 */
export function probeTcp(host: string, port: number, timeoutMs = 500, exchange?: { send?: string; expect: string }): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    let answer = '';
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => {
      if (!exchange) return done(true);
      if (exchange.send !== undefined) socket.write(exchange.send);
    });
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      answer += chunk;
      if (answer.includes(exchange?.expect ?? '')) done(true);
      // An answer that has grown past any sensible greeting without the text is not going to hold it.
      else if (answer.length > 64 * 1024) done(false);
    });
    socket.once('end', () => done(false));
    socket.once('error', () => done(false));
  });
}

/** One HTTP GET: the status code, or undefined when nothing answered in time. */
export function probeHttp(host: string, port: number, path: string, timeoutMs = 1000): Promise<number | undefined> {
  return new Promise((resolve) => {
    const req = request({ host, port, path, method: 'GET', timeout: timeoutMs, agent: false }, (res) => {
      res.resume();
      res.once('end', () => resolve(res.statusCode));
      res.once('error', () => resolve(res.statusCode));
    });
    req.once('timeout', () => {
      req.destroy();
      resolve(undefined);
    });
    req.once('error', () => resolve(undefined));
    req.end();
  });
}
