// The functions list: live from GET /v1/events (reloaded on every (re)connection, never polled), with each
// function's invocations and error rate of the last hour (GET /v1/metrics: re-read on every change the stream
// brings, throttled, and every 10 s, since invocations send no event).
import { useEffect, useMemo, useRef, useState } from 'react';
import { api, inProgress, watch, type FunctionFigures, type FunctionRecord, type FunctionState, type Runtime } from './api';
import { linkTo, navigate } from './router';
import { ConfirmDialog, ErrorBox, formatRate, isNewer, StateBadge, TimeAgo, useNow } from './ui';
import { useRefreshing } from './use-refreshing';

type StateFilter = 'all' | 'in-progress' | FunctionState;

function useLiveFunctions(onConnection: (live: boolean) => void, onEvent: () => void) {
  const [items, setItems] = useState<Map<string, FunctionRecord>>(new Map());
  const [loaded, setLoaded] = useState(false);
  const [error, setError] = useState<Error | null>(null);
  const deleted = useRef(new Set<string>());

  useEffect(() => {
    let closed = false;
    const reload = async () => {
      try {
        const list = await api.list();
        if (closed) return;
        // Merge, so an event that overtook this response is not undone by it.
        setItems((current) => {
          const next = new Map<string, FunctionRecord>();
          for (const item of list) {
            if (deleted.current.has(item.id)) continue;
            const seen = current.get(item.id);
            next.set(item.id, seen && !isNewer(item, seen) ? seen : item);
          }
          return next;
        });
        setError(null);
      } catch (caught) {
        if (!closed) setError(caught as Error);
      } finally {
        if (!closed) setLoaded(true);
      }
    };
    const close = watch(null, {
      onOpen: () => {
        void reload();
        onEvent();
      },
      onConnection,
      onChange: (change) => {
        onEvent();
        setItems((current) => {
          const next = new Map(current);
          if (change.type === 'deleted') {
            deleted.current.add(change.id);
            next.delete(change.id);
          } else if (!deleted.current.has(change.item.id) && isNewer(change.item, current.get(change.item.id))) {
            next.set(change.item.id, change.item);
          }
          return next;
        });
      },
    });
    // last_invoked_at changes without an event: a tab that comes back into view re-reads the list once.
    const onVisible = () => {
      if (document.visibilityState === 'visible') void reload();
    };
    document.addEventListener('visibilitychange', onVisible);
    return () => {
      closed = true;
      close();
      document.removeEventListener('visibilitychange', onVisible);
    };
  }, [onConnection, onEvent]);

  const remove = async (id: string) => {
    await api.remove(id);
    deleted.current.add(id);
    setItems((current) => {
      const next = new Map(current);
      next.delete(id);
      return next;
    });
  };
  return { items: [...items.values()], loaded, error, remove };
}

const loadFigures = () => api.figures('1h');

/** A function's invocations and error rate of the last hour, as two cells. */
function FigureCells({ figures }: { figures: FunctionFigures | undefined | null }) {
  if (figures === null) return <><td data-label="Invocations (1 h)" className="muted">…</td><td data-label="Error rate (1 h)" className="muted">…</td></>;
  const rate = figures?.error_rate ?? null;
  return (
    <>
      <td data-label="Invocations (1 h)" className="figures" data-testid="invocations-1h">{(figures?.invocations ?? 0).toLocaleString('en')}</td>
      <td data-label="Error rate (1 h)" className={`figures${rate ? ' bad' : ''}`} data-testid="error-rate-1h"
        title={figures && figures.errors > 0 ? `${figures.errors} of ${figures.invocations} failed` : undefined}>
        {rate === null ? '—' : formatRate(rate)}
      </td>
    </>
  );
}

export function FunctionList({ onConnection }: { onConnection: (live: boolean) => void }) {
  const figures = useRefreshing(loadFigures, { throttleMs: 2000, intervalMs: 10_000 });
  const byFunction = useMemo(() => figures.value && new Map(figures.value.map((f) => [f.function_id, f])), [figures.value]);
  const { refresh } = figures;
  const { items, loaded, error, remove } = useLiveFunctions(onConnection, refresh);
  const [query, setQuery] = useState('');
  const [runtime, setRuntime] = useState<'all' | Runtime>('all');
  const [state, setState] = useState<StateFilter>('all');
  const [toDelete, setToDelete] = useState<FunctionRecord | null>(null);
  const now = useNow();

  const shown = useMemo(() => {
    const q = query.trim().toLowerCase();
    return items
      .filter((f) => q === '' || f.name.toLowerCase().includes(q) || f.id.startsWith(q))
      .filter((f) => runtime === 'all' || f.runtime === runtime)
      .filter((f) => state === 'all' || (state === 'in-progress' ? inProgress(f.state) : f.state === state))
      .sort((a, b) => b.created_at.localeCompare(a.created_at));
  }, [items, query, runtime, state]);

  useEffect(() => {
    document.title = 'Functions · fnvm';
  }, []);

  return (
    <section className="page">
      <div className="page-head">
        <h1>Functions</h1>
        <a className="button primary" {...linkTo('/new')}>New function</a>
      </div>
      <div className="toolbar" role="search">
        <label className="grow">
          <span className="sr-only">Search</span>
          <input type="search" placeholder="Search by name" aria-label="Search" value={query} onChange={(e) => setQuery(e.target.value)} />
        </label>
        <label>
          Runtime
          <select aria-label="Runtime" value={runtime} onChange={(e) => setRuntime(e.target.value as 'all' | Runtime)}>
            <option value="all">All</option>
            <option value="node">Node.js</option>
            <option value="python">Python</option>
          </select>
        </label>
        <label>
          State
          <select aria-label="State" value={state} onChange={(e) => setState(e.target.value as StateFilter)}>
            <option value="all">All</option>
            <option value="ready">Ready</option>
            <option value="in-progress">Deploying</option>
            <option value="error">Error</option>
          </select>
        </label>
        <span className="muted count" data-testid="count">{shown.length} of {items.length}</span>
      </div>
      {error && <ErrorBox title="Could not load the functions" error={error} />}
      {figures.error && <ErrorBox title="Could not load the last hour's figures" error={figures.error} />}
      {loaded && items.length === 0 && !error && (
        <div className="empty">
          <p>No functions yet.</p>
          <a className="button primary" {...linkTo('/new')}>Create your first function</a>
        </div>
      )}
      {items.length > 0 && (
        <table className="table functions" aria-label="Functions">
          <thead>
            <tr>
              <th>Name</th>
              <th>Runtime</th>
              <th>State</th>
              <th>Last invoked</th>
              <th title="Invocations in the last hour">Invocations (1 h)</th>
              <th title="Share of the last hour's invocations that failed or timed out">Error rate (1 h)</th>
              <th><span className="sr-only">Actions</span></th>
            </tr>
          </thead>
          <tbody>
            {shown.map((f) => (
              <tr key={f.id} data-testid="function-row" data-name={f.name}>
                <td data-label="Name" className="name-cell">
                  <a {...linkTo(`/functions/${f.id}`)}>{f.name}</a>
                  {f.state === 'error' && f.error && <div className="row-error" title={f.error}>{f.error}</div>}
                </td>
                <td data-label="Runtime">{f.runtime === 'node' ? 'Node.js' : 'Python'}</td>
                <td data-label="State"><StateBadge state={f.state} testId="state" /></td>
                <td data-label="Last invoked"><TimeAgo iso={f.last_invoked_at} now={now} /></td>
                <FigureCells figures={byFunction && byFunction.get(f.id)} />
                <td className="row-actions">
                  <button type="button" disabled={f.state !== 'ready'} title={f.state === 'ready' ? 'Invoke with a custom event' : `Not ready (${f.state})`}
                    onClick={() => navigate(`/functions/${f.id}#invoke`)}>Invoke</button>
                  <button type="button" onClick={() => navigate(`/functions/${f.id}#history`)}>Logs</button>
                  <button type="button" className="danger-outline" onClick={() => setToDelete(f)}>Delete</button>
                </td>
              </tr>
            ))}
            {shown.length === 0 && (
              <tr>
                <td colSpan={7} className="muted">No function matches these filters.</td>
              </tr>
            )}
          </tbody>
        </table>
      )}
      {toDelete && (
        <ConfirmDialog title={`Delete ${toDelete.name}?`} confirmLabel="Delete" onConfirm={() => remove(toDelete.id)} onClose={() => setToDelete(null)}>
          <p>Its VM is stopped and its invocation history is deleted. This cannot be undone.</p>
        </ConfirmDialog>
      )}
    </section>
  );
}
