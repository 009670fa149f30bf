import test from 'ava';
import { createServer, type Server, type Socket } from 'node:net';
import { probeSeesApp } from '@tinyx/image';
import { probeTcp } from '@tinyx/toolstack';

/** A real TCP server on a free loopback port, answering each connection as `serve` says. */
async function server(t: import('ava').ExecutionContext, serve: (socket: Socket) => void): Promise<number> {
  const sockets = new Set<Socket>();
  const s: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    serve(socket);
  });
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const socket of sockets) socket.destroy();
    s.close();
  });
  return (s.address() as { port: number }).port;
}

const PONG = (socket: Socket): void => {
  socket.setEncoding('utf8').on('data', (line: string) => socket.write(line === 'PING\r\n' ? '+PONG\r\n' : '-ERR unknown command\r\n'));
};

test('a bare TCP probe passes on a connection, whatever the server says', async (t) => {
  const silent = await server(t, () => {});
  t.true(await probeTcp('127.0.0.1', silent));
});

test('a TCP exchange passes only when the answer holds the expected text', async (t) => {
  const redis = await server(t, PONG);
  t.true(await probeTcp('127.0.0.1', redis, 1000, { send: 'PING\r\n', expect: '+PONG' }));
  t.false(await probeTcp('127.0.0.1', redis, 1000, { send: 'PONG\r\n', expect: '+PONG' }), 'an error answer is not the expected one');
  const silent = await server(t, () => {});
  const started = performance.now();
  t.false(await probeTcp('127.0.0.1', silent, 200, { send: 'PING\r\n', expect: '+PONG' }), 'a server that accepts and never answers (the kernel on behalf of an app that does not read)');
  t.true(performance.now() - started < 2000, 'and it gives up after its timeout');
  const closes = await server(t, (socket) => socket.end('-LOADING Redis is loading the dataset in memory\r\n'));
  t.false(await probeTcp('127.0.0.1', closes, 1000, { send: 'PING\r\n', expect: '+PONG' }), 'closed without the text');
});

test('a TCP exchange with no send reads a server that speaks first; an answer in pieces counts whole', async (t) => {
  const banner = await server(t, (socket) => {
    socket.write('SSH-2.0-');
    setTimeout(() => socket.write('OpenSSH_9.2\r\n'), 50);
  });
  t.true(await probeTcp('127.0.0.1', banner, 1000, { expect: 'SSH-2.0-OpenSSH' }));
  t.false(await probeTcp('127.0.0.1', banner, 300, { expect: 'SMTP' }));
});

test('a closed port fails every probe', async (t) => {
  const port = await server(t, () => {});
  const closed = createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const free = (closed.address() as { port: number }).port;
  await new Promise((resolve) => closed.close(resolve));
  t.not(free, port);
  t.false(await probeTcp('127.0.0.1', free));
  t.false(await probeTcp('127.0.0.1', free, 500, { send: 'PING\r\n', expect: '+PONG' }));
});

test('which probes see the app answer: HTTP and a TCP exchange, not a bare connection, a console line or none', (t) => {
  t.true(probeSeesApp({ http: { port: 80, path: '/' } }));
  t.true(probeSeesApp({ tcp: { port: 6379, send: 'PING\r\n', expect: '+PONG' } }));
  t.true(probeSeesApp({ tcp: { port: 22, expect: 'SSH-' } }));
  t.false(probeSeesApp({ tcp: { port: 6379 } }));
  t.false(probeSeesApp({ console: { line: 'ready' } }));
  t.false(probeSeesApp(null));
});
