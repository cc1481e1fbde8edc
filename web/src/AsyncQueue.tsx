// A function's asynchronous invocations: the queue's figures, its retry settings, and the dead-letter list with
// each event's error, to redrive (one, or all) or discard. Read again when the function's records change (every
// attempt commits one) and every few seconds.
import { useCallback, useEffect, useState } from 'react';
import { api, type DeadLetter, type FunctionRecord, type QueueFigures } from './api';
import type { InvocationFeed } from './invocation-feed';
import { ErrorBox, formatTime, Json, timeAgo, useNow } from './ui';
import { useRefreshing } from './use-refreshing';

const shownLetters = 50;

interface QueueView {
  figures: QueueFigures;
  letters: DeadLetter[];
  total: number;
}

export function AsyncQueue({ fn, feed }: { fn: FunctionRecord; feed: InvocationFeed }) {
  const load = useCallback(async (): Promise<QueueView> => {
    const [figures, dead] = await Promise.all([api.queue(fn.id), api.deadLetters(fn.id, shownLetters)]);
    return { figures, letters: dead.items, total: dead.total };
  }, [fn.id]);
  const view = useRefreshing(load, { throttleMs: 500, intervalMs: 3000 });
  const { refresh } = view;
  useEffect(() => feed.subscribe({ onRecord: refresh }), [feed, refresh]);
  const [busy, setBusy] = useState(false);
  const [actionError, setActionError] = useState<Error | null>(null);
  const [open, setOpen] = useState<string | null>(null);
  const now = useNow(5000);

  const act = async (action: () => Promise<unknown>) => {
    setBusy(true);
    setActionError(null);
    try {
      await action();
    } catch (caught) {
      setActionError(caught as Error);
    } finally {
      setBusy(false);
      refresh();
    }
  };

  const value = view.value;
  return (
    <section className="card" id="async" aria-labelledby="async-title">
      <div className="card-head">
        <h2 id="async-title">Asynchronous invocations</h2>
        {value && value.total > 0 && (
          <button type="button" disabled={busy} onClick={() => void act(() => api.redrive(fn.id))} data-testid="redrive-all">
            Redrive all ({value.total})
          </button>
        )}
      </div>
      <p className="muted">
        Up to {fn.async_max_retries} {fn.async_max_retries === 1 ? 'retry' : 'retries'} after an error or timeout, for events up to{' '}
        {fn.async_max_event_age_seconds >= 3600 ? `${(fn.async_max_event_age_seconds / 3600).toFixed(1)} h` : `${fn.async_max_event_age_seconds} s`} old.
      </p>
      {view.error && <ErrorBox title="Could not read the queue" error={view.error} />}
      {actionError && <ErrorBox error={actionError} testId="async-action-error" />}
      {value && (
        <dl className="meta" data-testid="async-figures">
          <div><dt>Queued</dt><dd data-testid="async-queued">{value.figures.queued} ({value.figures.running} running)</dd></div>
          <div><dt>Oldest</dt><dd>{value.figures.oldest_queued_at === null ? <span className="muted">none queued</span> : timeAgo(new Date(value.figures.oldest_queued_at).toISOString(), now)}</dd></div>
          <div><dt>Dead letters</dt><dd data-testid="dead-letter-count">{value.total}</dd></div>
        </dl>
      )}
      {value && value.letters.length > 0 && (
        <table className="table dead-letters" data-testid="dead-letters">
          <thead>
            <tr><th>Failed</th><th>Error</th><th>Attempts</th><th /></tr>
          </thead>
          <tbody>
            {value.letters.map((letter) => (
              <DeadLetterRow key={letter.request_id} letter={letter} open={open === letter.request_id} busy={busy}
                onToggle={() => setOpen((current) => (current === letter.request_id ? null : letter.request_id))}
                onRedrive={() => void act(() => api.redrive(fn.id, [letter.request_id]))}
                onDiscard={() => void act(() => api.discard(fn.id, letter.request_id))} />
            ))}
          </tbody>
        </table>
      )}
      {value && value.total > value.letters.length && <p className="muted">The {shownLetters} latest of {value.total} are shown.</p>}
    </section>
  );
}

function DeadLetterRow(props: { letter: DeadLetter; open: boolean; busy: boolean; onToggle: () => void; onRedrive: () => void; onDiscard: () => void }) {
  const { letter } = props;
  return (
    <>
      <tr data-testid="dead-letter" data-request-id={letter.request_id}>
        <td title={letter.failed_at}>{formatTime(letter.failed_at)}</td>
        <td>
          <button type="button" className="link" onClick={props.onToggle} aria-expanded={props.open}>
            <span data-testid="dead-letter-error">{letter.error ? `${letter.error.type}: ${letter.error.message}` : 'no error recorded'}</span>
          </button>
          <div className="muted">{letter.reason === 'EventAgeExceeded' ? 'too old to retry' : 'retries exhausted'}</div>
        </td>
        <td>{letter.attempts}</td>
        <td className="actions">
          <button type="button" disabled={props.busy} onClick={props.onRedrive} data-testid="redrive">Redrive</button>
          <button type="button" className="danger-outline" disabled={props.busy} onClick={props.onDiscard} data-testid="discard">Discard</button>
        </td>
      </tr>
      {props.open && (
        <tr>
          <td colSpan={4}>
            <p className="muted">Request <code>{letter.request_id}</code>, accepted {formatTime(letter.enqueued_at)}</p>
            <Json value={letter.event} testId="dead-letter-event" />
          </td>
        </tr>
      )}
    </>
  );
}
