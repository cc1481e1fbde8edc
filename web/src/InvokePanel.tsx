// Invoke with a JSON event; shows status, duration, response, logs and the error in full.
import { useEffect, useRef, useState } from 'react';
import { api, type FunctionRecord, type InvokeResult } from './api';
import { CodeEditor } from './CodeEditor';
import { ErrorBox, formatMs, Json, Logs, StateBadge } from './ui';

/** The server keeps no responses in the history, so the console remembers the ones it saw. */
export const seenResponses = new Map<string, unknown>();

export function InvokePanel(props: {
  fn: FunctionRecord;
  /** Incremented by "Test invoke" elsewhere on the page: invoke now with the current event. */
  trigger: number;
}) {
  const [eventText, setEventText] = useState('{\n  "name": "World"\n}\n');
  const [running, setRunning] = useState(false);
  const [result, setResult] = useState<InvokeResult | null>(null);
  const [error, setError] = useState<Error | null>(null);
  const [parseError, setParseError] = useState<string | null>(null);
  const [roundTrip, setRoundTrip] = useState<number | null>(null);
  /** Queue it instead (Prefer: respond-async): the answer is the event's request id; its attempts go in the history. */
  const [queueIt, setQueueIt] = useState(false);
  const [queued, setQueued] = useState<string | null>(null);

  const invoke = async () => {
    let event: unknown;
    try {
      event = eventText.trim() === '' ? {} : JSON.parse(eventText);
    } catch (caught) {
      setParseError(`The event is not valid JSON: ${(caught as Error).message}`);
      return;
    }
    setParseError(null);
    setRunning(true);
    setError(null);
    setQueued(null);
    const started = performance.now();
    try {
      if (queueIt) {
        setResult(null);
        setQueued((await api.invokeAsync(props.fn.id, event)).request_id);
        return;
      }
      const answer = await api.invoke(props.fn.id, event);
      seenResponses.set(answer.request_id, answer.response);
      setResult(answer);
    } catch (caught) {
      setResult(null);
      setError(caught as Error);
    } finally {
      setRoundTrip(performance.now() - started);
      setRunning(false);
    }
  };

  const lastTrigger = useRef(props.trigger);
  useEffect(() => {
    if (props.trigger !== lastTrigger.current) {
      lastTrigger.current = props.trigger;
      void invoke();
    }
  });

  return (
    <section className="card" id="invoke" aria-labelledby="invoke-title">
      <h2 id="invoke-title">Invoke</h2>
      <div
        onKeyDownCapture={(e) => {
          if ((e.ctrlKey || e.metaKey) && e.key === 'Enter') {
            e.preventDefault();
            e.stopPropagation();
            void invoke();
          }
        }}
      >
        <div className="editor-label">
          <span>Event (JSON)</span>
          <span className="muted">Ctrl/⌘+Enter to invoke</span>
        </div>
        <CodeEditor value={eventText} onChange={setEventText} language="json" label="Event (JSON)" height="140px" testId="event-editor" />
      </div>
      {parseError && <ErrorBox error={parseError} />}
      <div className="actions">
        <button type="button" className="primary" onClick={invoke} disabled={running || props.fn.state === 'error'}>
          {running ? 'Invoking…' : queueIt ? 'Queue' : 'Invoke'}
        </button>
        <label className="inline">
          <input type="checkbox" checked={queueIt} onChange={(e) => setQueueIt(e.target.checked)} data-testid="invoke-async" /> asynchronously
        </label>
        {props.fn.state === 'error' && <span className="muted">Fix the deploy error first.</span>}
        {props.fn.state !== 'ready' && props.fn.state !== 'error' && <span className="muted">Waits until the function is ready.</span>}
      </div>
      {error && <ErrorBox title="Invoke failed" error={error} testId="invoke-error" />}
      {queued && (
        <p className="result" data-testid="invoke-queued">
          Queued as <code>{queued}</code>: its attempts appear in the history, and if it gives up, under Asynchronous invocations.
        </p>
      )}
      {result && (
        <div className="result" data-testid="invoke-result">
          <div className="result-meta">
            <StateBadge state={result.status} testId="invoke-status" />
            <span data-testid="duration" title="measured in the guest">{formatMs(result.duration_ms)}</span>
            {roundTrip !== null && <span className="muted" title="measured in the browser">round trip {formatMs(roundTrip)}</span>}
            {result.cold_start && <span className="tag">cold start</span>}
            <span className="muted">v{result.version}</span>
            <code className="muted request-id" title="request id">{result.request_id}</code>
          </div>
          {result.error && <ErrorBox error={result.error} testId="result-error" />}
          <h3>Response</h3>
          <Json value={result.response} testId="response" />
          <h3>Logs</h3>
          <Logs lines={result.logs} testId="logs" />
        </div>
      )}
    </section>
  );
}
