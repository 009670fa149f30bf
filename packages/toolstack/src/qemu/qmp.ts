import { createConnection, type Socket } from 'node:net';
import { TinyxError } from '@tinyx/image';

/**
 * A client of QEMU's machine protocol (QMP) over its unix socket: one JSON
 * object per line, commands answered in order, events in between.
 */
export class QmpClient {
  private buffer = '';
  private readonly waiting: { resolve: (value: unknown) => void; reject: (error: Error) => void; command: string }[] = [];
  private closed = false;

  private constructor(private readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.receive(chunk));
    socket.on('close', () => {
      this.closed = true;
      for (const w of this.waiting.splice(0)) w.reject(new TinyxError('E_QMP', `QEMU closed its QMP socket before answering ${w.command}`));
    });
    socket.on('error', () => undefined);
  }

  /** Connects (retrying while QEMU creates the socket) and negotiates capabilities. */
  static async connect(path: string, timeoutMs = 10_000): Promise<QmpClient> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const socket = await new Promise<Socket>((resolve, reject) => {
          const s = createConnection(path, () => resolve(s));
          s.once('error', reject);
        });
        const client = new QmpClient(socket);
        // QMP serves one client at a time: a busy monitor accepts the connection but never greets.
        const left = Math.max(100, deadline - Date.now());
        const greeted = await Promise.race([client.greeting().then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), left).unref())]);
        if (!greeted) {
          client.close();
          throw new TinyxError('E_QMP_BUSY', `the QMP socket ${path} is busy (another client holds it)`);
        }
        await client.execute('qmp_capabilities');
        return client;
      } catch (error) {
        if (Date.now() > deadline) throw new TinyxError('E_QMP', `no QMP answer on ${path}: ${(error as Error).message}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  private greeting(): Promise<unknown> {
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject, command: 'greeting' }));
  }

  async execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    if (this.closed) throw new TinyxError('E_QMP', `QEMU is gone; cannot run ${command}`);
    const answer = new Promise<unknown>((resolve, reject) => this.waiting.push({ resolve, reject, command }));
    this.socket.write(`${JSON.stringify(args ? { execute: command, arguments: args } : { execute: command })}\n`);
    return answer;
  }

  close(): void {
    this.socket.destroy();
  }

  private receive(chunk: string): void {
    this.buffer += chunk;
    let newline: number;
    while ((newline = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, newline).trim();
      this.buffer = this.buffer.slice(newline + 1);
      if (!line) continue;
      const message = JSON.parse(line) as { QMP?: unknown; return?: unknown; error?: { desc: string }; event?: string };
      if (message.event) continue;
      const waiter = this.waiting.shift();
      if (!waiter) continue;
      if (message.error) waiter.reject(new TinyxError('E_QMP', `QMP ${waiter.command}: ${message.error.desc}`));
      else waiter.resolve(message.QMP ?? message.return);
    }
  }
}
