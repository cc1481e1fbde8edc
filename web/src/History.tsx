// Invocation history: newest first, limit/offset pages, rows expand to logs, error and response. Live: records
// the page's invocation feed brings go on top of the first page (and push older pages down) as they are committed.
import { Fragment, useCallback, useEffect, useRef, useState } from 'react';
import { api, type InvocationRecord } from './api';
import { pageOf, windowOf, withArrivals, type Anchor, type Page } from './history-page';
import type { InvocationFeed } from './invocation-feed';
import { seenResponses } from './InvokePanel';
import { ErrorBox, formatMs, formatTime, Json, Logs, StateBadge } from './ui';

export function History({ functionId, feed }: { functionId: string; feed: InvocationFeed }) {
  const [limit, setLimit] = useState(10);
  const [page, setPage] = useState<Page>({ offset: 0, items: [], hasMore: false });
  /** Records committed since the page shown was read, which pushed it down (on the first page they are in it). */
  const [pushed, setPushed] = useState(0);
  const [error, setError] = useState<Error | null>(null);
  const [loading, setLoading] = useState(true);
  const [open, setOpen] = useState<Set<string>>(new Set());
  /** Records the feed brought while a load was under way, oldest first. */
  const arrived = useRef<InvocationRecord[]>([]);
  const loadingNow = useRef(false);
  const loadSeq = useRef(0);
  // What the feed handler reads: the page shown and its size.
  const shown = useRef({ page, limit });
  shown.current = { page, limit };

  const load = useCallback(async (offset: number, pageLimit: number, anchor?: Anchor) => {
    const mine = ++loadSeq.current;
    arrived.current = [];
    loadingNow.current = true;
    setLoading(true);
    try {
      const request = { offset, limit: pageLimit, anchor };
      const span = windowOf(request);
      const rows = await api.logs(functionId, span.limit, span.offset);
      if (mine !== loadSeq.current) return;
      const next = pageOf(request, rows, span.offset);
      setPage(next.offset === 0 ? withArrivals(next, arrived.current, pageLimit) : next);
      // A record that came during the load may be in the page or above it; counting it keeps the estimate near.
      setPushed(next.offset === 0 ? 0 : arrived.current.length);
      setError(null);
    } catch (caught) {
      if (mine === loadSeq.current) setError(caught as Error);
    } finally {
      if (mine === loadSeq.current) {
        loadingNow.current = false;
        arrived.current = [];
        setLoading(false);
      }
    }
  }, [functionId]);

  // The feed: every (re)connection reloads the page shown (what was committed while it was down is not sent
  // again); every record goes on top of the first page, or pushes an older one down.
  useEffect(() => feed.subscribe({
    onOpen: () => {
      const { page: current, limit: pageLimit } = shown.current;
      const first = current.items[0];
      void (current.offset === 0 || !first ? load(0, pageLimit) : load(current.offset, pageLimit, { id: first.id, place: 'at' }));
    },
    onRecord: (record) => {
      const { page: current, limit: pageLimit } = shown.current;
      if (loadingNow.current) arrived.current.push(record);
      if (current.offset === 0) setPage((latest) => (latest.offset === 0 ? withArrivals(latest, [record], pageLimit) : latest));
      else setPushed((n) => n + 1);
    },
  }), [feed, load]);

  useEffect(() => {
    void load(0, shown.current.limit);
  }, [load]);

  const offset = page.offset + pushed;
  const older = () => {
    const last = page.items.at(-1);
    void load(offset + page.items.length, limit, last && { id: last.id, place: 'after' });
  };
  // The page right above the one shown; when that is within a page of the top (records came meanwhile), the
  // first page: the newest, which is what going back up is for.
  const newer = () => {
    const first = page.items[0];
    const target = offset - limit;
    void (target < limit || !first ? load(0, limit) : load(target, limit, { id: first.id, place: 'before' }));
  };

  const toggle = (id: string) =>
    setOpen((current) => {
      const next = new Set(current);
      if (!next.delete(id)) next.add(id);
      return next;
    });

  return (
    <section className="card" id="history" aria-labelledby="history-title">
      <div className="card-head">
        <h2 id="history-title">Invocation history</h2>
      </div>
      {error && <ErrorBox title="Could not load the history" error={error} />}
      {!error && page.items.length === 0 && !loading && <p className="muted">{offset === 0 ? 'No invocations yet.' : 'No older invocations.'}</p>}
      {page.items.length > 0 && (
        <table className="table history" aria-label="Invocation history">
          <thead>
            <tr>
              <th>Status</th>
              <th>Duration</th>
              <th>Time</th>
              <th>Request ID</th>
              <th>Version</th>
              <th><span className="sr-only">Details</span></th>
            </tr>
          </thead>
          <tbody>
            {page.items.map((inv) => {
              const expanded = open.has(inv.id);
              return (
                <Fragment key={inv.id}>
                  <tr data-testid="invocation-row" data-request-id={inv.request_id} className={expanded ? 'expanded' : undefined}>
                    <td data-label="Status"><StateBadge state={inv.status} testId="invocation-status" /></td>
                    <td data-label="Duration">{formatMs(inv.duration_ms)}{inv.cold_start && <span className="tag">cold</span>}</td>
                    <td data-label="Time"><time dateTime={inv.invoked_at}>{formatTime(inv.invoked_at)}</time></td>
                    <td data-label="Request ID"><code className="request-id" title={inv.request_id}>{inv.request_id}</code></td>
                    <td data-label="Version">v{inv.version}</td>
                    <td className="row-actions">
                      <button type="button" aria-expanded={expanded} onClick={() => toggle(inv.id)}>{expanded ? 'Hide' : 'Details'}</button>
                    </td>
                  </tr>
                  {expanded && (
                    <tr className="detail-row" data-testid="invocation-detail">
                      <td colSpan={6}>
                        <code className="detail-request-id muted">request {inv.request_id}</code>
                        {inv.error && <ErrorBox error={inv.error} />}
                        <h3>Logs</h3>
                        <Logs lines={inv.logs} />
                        <h3>Response</h3>
                        {seenResponses.has(inv.request_id) ? (
                          <Json value={seenResponses.get(inv.request_id)} />
                        ) : (
                          <p className="muted">Not recorded: the server keeps no responses; only invocations made from this page show theirs.</p>
                        )}
                      </td>
                    </tr>
                  )}
                </Fragment>
              );
            })}
          </tbody>
        </table>
      )}
      <div className="pager">
        <button type="button" onClick={newer} disabled={offset === 0 || loading}>← Newer</button>
        <span className="muted" data-testid="page-range">
          {page.items.length > 0 ? `${offset + 1}–${offset + page.items.length}` : '0'}
        </span>
        <button type="button" onClick={older} disabled={!page.hasMore || loading}>Older →</button>
        <label className="page-size">
          Per page
          <select aria-label="Per page" value={limit} onChange={(e) => {
            const next = Number(e.target.value);
            setLimit(next);
            void load(0, next);
          }}>
            {[10, 25, 50, 100].map((n) => <option key={n} value={n}>{n}</option>)}
          </select>
        </label>
      </div>
    </section>
  );
}
