// One follow stream of a function's new invocation records, shared by the parts of its page that show them (the
// history and the charts), so a page holds one connection however many parts listen.
import { useEffect, useState } from 'react';
import { followInvocations, type InvocationRecord } from './api';

export interface FeedListener {
  /** A record just committed, in commit order. */
  onRecord?: (record: InvocationRecord) => void;
  /** The stream (re)connected. Records committed while it was down are not sent: reload what you show. */
  onOpen?: () => void;
  /** The stream is up (true) or down and being retried (false). */
  onConnection?: (live: boolean) => void;
}

export class InvocationFeed {
  private readonly listeners = new Set<FeedListener>();
  private open = false;

  /**
   * Adds a listener; one that subscribes while the stream is already open gets `onOpen` at once, since it may
   * have loaded before the stream began and missed a record in between. Returns the unsubscriber.
   */
  subscribe(listener: FeedListener): () => void {
    this.listeners.add(listener);
    if (this.open) listener.onOpen?.();
    return () => void this.listeners.delete(listener);
  }

  /** Follows the function until the returned closer runs. */
  connect(functionId: string): () => void {
    const close = followInvocations(functionId, {
      onRecord: (record) => this.listeners.forEach((listener) => listener.onRecord?.(record)),
      onOpen: () => {
        this.open = true;
        this.listeners.forEach((listener) => listener.onOpen?.());
      },
      onConnection: (live) => {
        if (!live) this.open = false;
        this.listeners.forEach((listener) => listener.onConnection?.(live));
      },
      onDeleted: () => (this.open = false),
    });
    return () => {
      this.open = false;
      close();
    };
  }
}

/** The page's feed: one object for the page's life, connected while the function's id is known. */
export function useInvocationFeed(functionId: string | undefined): InvocationFeed {
  const [feed] = useState(() => new InvocationFeed());
  useEffect(() => (functionId ? feed.connect(functionId) : undefined), [feed, functionId]);
  return feed;
}
