// A unix socket the host listens on and QEMU connects to (once) at start-up.
import { createServer, type Server, type Socket } from 'node:net';

export class UnixListener {
  private readonly server: Server;
  readonly connected: Promise<Socket>;

  private constructor(server: Server, connected: Promise<Socket>) {
    this.server = server;
    this.connected = connected;
  }

  static async listen(path: string): Promise<UnixListener> {
    const server = createServer();
    const connected = new Promise<Socket>((resolve) => server.once('connection', resolve));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
    // Only one peer is ever expected: stop listening (and unlink the path) once it came.
    void connected.then(() => server.close());
    return new UnixListener(server, connected);
  }

  close(): void {
    this.server.close();
  }
}
