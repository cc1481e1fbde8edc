// Invocation history: newest first, limit/offset pages, rows expand to logs, error and response.
import { Fragment, useEffect, useState } from 'react';
import { api, type InvocationRecord } from './api';
import { seenResponses } from './InvokePanel';
import { ErrorBox, formatMs, formatTime, Json, Logs, StateBadge } from './ui';

export function History({ functionId, refresh }: { functionId: string; refresh: number }) {
  const [limit, setLimit] = useState(10);
  const [offset, setOffset] = useState(0);
  const [items, setItems] = useState<InvocationRecord[]>([]);
  const [hasMore, setHasMore] = useState(false);
  const [error, setError] = useState<Error | null>(null);
  const [loading, setLoading] = useState(true);
  const [open, setOpen] = useState<Set<string>>(new Set());
  const [reloads, setReloads] = useState(0);

  useEffect(() => {
    let current = true;
    setLoading(true);
    // One more than a page tells whether an older page exists (the API returns no total).
    api.logs(functionId, limit + 1, offset).then(
      (page) => {
        if (!current) return;
        setItems(page.slice(0, limit));
        setHasMore(page.length > limit);
        setError(null);
        setLoading(false);
      },
      (caught: Error) => {
        if (!current) return;
        setError(caught);
        setLoading(false);
      },
    );
    return () => {
      current = false;
    };
  }, [functionId, limit, offset, refresh, reloads]);

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
        <button type="button" onClick={() => setReloads((n) => n + 1)} disabled={loading}>Refresh</button>
      </div>
      {error && <ErrorBox title="Could not load the history" error={error} />}
      {!error && items.length === 0 && !loading && <p className="muted">{offset === 0 ? 'No invocations yet.' : 'No older invocations.'}</p>}
      {items.length > 0 && (
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
            {items.map((inv) => {
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
        <button type="button" onClick={() => setOffset(Math.max(0, offset - limit))} disabled={offset === 0 || loading}>← Newer</button>
        <span className="muted" data-testid="page-range">
          {items.length > 0 ? `${offset + 1}–${offset + items.length}` : '0'}
        </span>
        <button type="button" onClick={() => setOffset(offset + limit)} disabled={!hasMore || loading}>Older →</button>
        <label className="page-size">
          Per page
          <select aria-label="Per page" value={limit} onChange={(e) => { setLimit(Number(e.target.value)); setOffset(0); }}>
            {[10, 25, 50, 100].map((n) => <option key={n} value={n}>{n}</option>)}
          </select>
        </label>
      </div>
    </section>
  );
}
