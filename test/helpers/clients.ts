import { connect } from 'node:net';

/**
 * Minimal real clients for the apps the end-to-end tests boot: they speak the
 * wire protocol over a TCP socket to the forwarded port, as any client would.
 */

/** Sends `request` and collects what the server says until `done(reply)` or the timeout. */
function exchange(port: number, request: string, done: (reply: string) => boolean, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    let reply = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no complete answer within ${timeoutMs} ms; got ${JSON.stringify(reply)}`));
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.on('connect', () => socket.write(request));
    socket.on('data', (chunk: string) => {
      reply += chunk;
      if (done(reply)) {
        clearTimeout(timer);
        socket.end();
        resolve(reply);
      }
    });
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

/** One Redis command in RESP; the reply as RESP text (`+PONG\r\n`, `$3\r\nbar\r\n`, ...). */
export function redisCommand(port: number, ...args: string[]): Promise<string> {
  const request = `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
  return exchange(port, request, (reply) => {
    if (!reply.endsWith('\r\n')) return false;
    // A bulk string's header line is followed by its data line.
    return !reply.startsWith('$') || reply.startsWith('$-1') || reply.split('\r\n').length >= 3;
  });
}

/** One memcached text-protocol command; the reply up to its terminator line (STORED, END, ERROR, ...). */
export function memcachedCommand(port: number, command: string): Promise<string> {
  return exchange(port, command, (reply) => /(^|\r\n)(STORED|NOT_STORED|END|ERROR|CLIENT_ERROR [^\r]*|SERVER_ERROR [^\r]*)\r\n$/.test(reply));
}
