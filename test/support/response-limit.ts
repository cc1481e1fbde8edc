// The 6 MiB response limit as both agent suites check it: the agent itself must refuse (the host's own
// check would also catch it, but says "measured by the host").
import assert from 'node:assert/strict';
import type { InvokeResult } from '../../src/guest/protocol.js';
import { maxResponseBytes as limit } from '../../src/guest/limits.js';

/** What the handler under test gets: return `chars` times "x" (ascii) or "é" (2 bytes of UTF-8). */
export interface SizedEvent {
  ascii: boolean;
  chars: number;
}

export async function checkAgentResponseLimit(invoke: (event: SizedEvent) => Promise<InvokeResult>): Promise<void> {
  // JSON adds two quotes; then 1 byte per "x" and 2 per "é".
  for (const event of [{ ascii: true, chars: limit - 2 }, { ascii: false, chars: limit / 2 - 1 }]) {
    const exact = await invoke(event);
    assert.equal(exact.status, 'success', JSON.stringify(exact.error));
    assert.equal(Buffer.byteLength(JSON.stringify(exact.response)), limit);
  }
  const over: Array<[SizedEvent, number]> = [[{ ascii: true, chars: limit - 1 }, limit + 1], [{ ascii: false, chars: limit / 2 }, limit + 2]];
  for (const [event, bytes] of over) {
    const result = await invoke(event);
    assert.equal(result.status, 'error');
    assert.equal(result.response, null);
    assert.equal(result.error?.type, 'ResponseTooLarge');
    assert.match(result.error?.message ?? '', new RegExp(`is ${bytes} bytes`));
    assert.doesNotMatch(result.error?.message ?? '', /measured by the host/, 'the agent checked before sending');
  }
}
