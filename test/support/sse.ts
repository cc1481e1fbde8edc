// A test client of server-sent event streams that reads every event as it arrives, like EventSource.
import assert from 'node:assert/strict';

export interface Sse {
  events: Array<{ event: string; data: string }>;
  /** Settles when the server ends the stream: resolves on a clean end, rejects if it broke. */
  ended: Promise<void>;
  abort(): void;
}

/** A client that reads every event as it arrives, like EventSource. */
export async function follow(url: string): Promise<Sse> {
  const controller = new AbortController();
  const response = await fetch(url, { signal: controller.signal });
  assert.equal(response.status, 200, `${url}: ${response.status}`);
  assert.ok(response.body);
  const events: Sse['events'] = [];
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  const ended = (async () => {
    let buffer = '';
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      buffer += value;
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = /^event: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (event !== undefined && data !== undefined) events.push({ event, data });
      }
    }
  })();
  ended.catch(() => {}); // observed by the tests that care
  return { events, ended, abort: () => controller.abort() };
}

export async function until(what: string, probe: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

