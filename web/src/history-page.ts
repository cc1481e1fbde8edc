// Paging a history that grows at the top while it is read. The API pages by offset from the newest record, and
// every record committed since a page was read pushes the pages down by one. The page shown counts the records
// the live stream brought since (an estimate: one that came while the page loaded may or may not be in it), and
// the next page is anchored to a record of the current one, found in a window a little wider than the page, so
// paging neither repeats nor skips a record while invocations keep coming.
import type { InvocationRecord } from './api';

/** `at`: the page starts with the record; `after`: right after it (older); `before`: ends right before it (newer). */
export interface Anchor {
  id: string;
  place: 'at' | 'after' | 'before';
}

export interface PageRequest {
  /** Where the page is expected to start, from the newest record. */
  offset: number;
  limit: number;
  anchor?: Anchor;
}

export interface Page {
  offset: number;
  items: InvocationRecord[];
  hasMore: boolean;
}

/** How far an expected offset may be off and still be put right by its anchor. */
const slack = 20;

/** The rows to ask the API for: the page, one more (is there an older one?) and, with an anchor, slack around it. */
export function windowOf(request: PageRequest): { offset: number; limit: number } {
  if (!request.anchor) return { offset: request.offset, limit: request.limit + 1 };
  const offset = Math.max(0, request.offset - slack);
  return { offset, limit: request.offset - offset + request.limit + 1 + slack };
}

/** The page in the rows `windowOf` asked for (starting at `windowOffset`). */
export function pageOf(request: PageRequest, rows: InvocationRecord[], windowOffset: number): Page {
  let start = request.offset - windowOffset;
  const at = request.anchor ? rows.findIndex((row) => row.id === request.anchor?.id) : -1;
  if (at >= 0 && request.anchor) {
    start = request.anchor.place === 'at' ? at : request.anchor.place === 'after' ? at + 1 : at - request.limit;
    // A newer page that would start above the newest record is the first page.
    if (windowOffset + start < 0) start = -windowOffset;
  }
  start = Math.max(0, start);
  return { offset: windowOffset + start, items: rows.slice(start, start + request.limit), hasMore: rows.length > start + request.limit };
}

/**
 * The first page with records that arrived on the stream (oldest first) put on top, newest first, each once: a
 * record that arrived and is not in the page was committed after the page was read.
 */
export function withArrivals(page: Page, arrived: InvocationRecord[], limit: number): Page {
  const shown = new Set(page.items.map((item) => item.id));
  const fresh: InvocationRecord[] = [];
  for (const record of arrived) {
    if (shown.has(record.id)) continue;
    shown.add(record.id);
    fresh.unshift(record);
  }
  const items = [...fresh, ...page.items];
  return { offset: 0, items: items.slice(0, limit), hasMore: page.hasMore || items.length > limit };
}
