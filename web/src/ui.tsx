// Small shared pieces: state badges, error boxes, times, JSON, the confirmation dialog.
import { useEffect, useRef, useState, type ReactNode } from 'react';
import { ApiError, type ErrorInfo, type FunctionState, type InvocationStatus } from './api';

export function StateBadge({ state, testId }: { state: FunctionState | InvocationStatus; testId: string }) {
  return (
    <span className={`badge badge-${state}`} data-testid={testId} data-state={state}>
      {state}
    </span>
  );
}

/** An error shown in full: type and message, then the stack (or an API error's HTTP status). */
export function ErrorBox({ title, error, testId }: { title?: string; error: ErrorInfo | Error | string; testId?: string }) {
  let heading: string;
  let detail: string | undefined;
  if (typeof error === 'string') heading = error;
  else if (error instanceof ApiError) {
    heading = error.message;
    detail = error.status ? `HTTP ${error.status}` : undefined;
  } else if (error instanceof Error) {
    heading = `${error.name}: ${error.message}`;
    detail = error.stack;
  } else {
    heading = `${error.type}: ${error.message}`;
    detail = error.stack && error.stack !== heading ? error.stack : undefined;
  }
  return (
    <div className="error-box" role="alert" data-testid={testId}>
      {title && <strong>{title}</strong>}
      <pre className="error-message">{heading}</pre>
      {detail && <pre className="error-stack">{detail}</pre>}
    </div>
  );
}

/** Re-renders every `ms` so relative times stay true (no network). */
export function useNow(ms = 15_000): number {
  const [now, setNow] = useState(Date.now);
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(timer);
  }, [ms]);
  return now;
}

export function formatTime(iso: string | null): string {
  if (!iso) return '—';
  const d = new Date(iso);
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function timeAgo(iso: string | null, now: number): string {
  if (!iso) return 'never';
  const seconds = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (seconds < 10) return 'just now';
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86_400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86_400)} d ago`;
}

export function TimeAgo({ iso, now }: { iso: string | null; now: number }) {
  return <time dateTime={iso ?? undefined} title={formatTime(iso)}>{timeAgo(iso, now)}</time>;
}

export function formatMs(ms: number): string {
  return ms < 10 ? `${ms.toFixed(2)} ms` : ms < 1000 ? `${ms.toFixed(1)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

export function Json({ value, testId }: { value: unknown; testId?: string }) {
  const text = value === undefined ? 'undefined' : JSON.stringify(value, null, 2);
  return <pre className="json" data-testid={testId}>{text}</pre>;
}

export function Logs({ lines, testId }: { lines: string[]; testId?: string }) {
  if (lines.length === 0) return <p className="muted" data-testid={testId}>No output.</p>;
  return <pre className="logs" data-testid={testId}>{lines.join('\n')}</pre>;
}

/** A modal confirmation (native <dialog>): Escape or Cancel closes it; errors of the action stay visible. */
export function ConfirmDialog(props: {
  title: string;
  children: ReactNode;
  confirmLabel: string;
  onConfirm: () => Promise<void>;
  onClose: () => void;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Error | null>(null);
  useEffect(() => {
    ref.current?.showModal();
  }, []);
  const confirm = async () => {
    setBusy(true);
    setError(null);
    try {
      await props.onConfirm();
      props.onClose();
    } catch (caught) {
      setError(caught as Error);
      setBusy(false);
    }
  };
  return (
    <dialog ref={ref} className="dialog" aria-labelledby="dialog-title" onClose={props.onClose}>
      <h2 id="dialog-title">{props.title}</h2>
      <div className="dialog-body">{props.children}</div>
      {error && <ErrorBox error={error} />}
      <div className="actions">
        <button type="button" onClick={() => ref.current?.close()} autoFocus>Cancel</button>
        <button type="button" className="danger" onClick={confirm} disabled={busy}>
          {busy ? 'Deleting…' : props.confirmLabel}
        </button>
      </div>
    </dialog>
  );
}

/** Newer of two copies of a record by updated_at (events and fetches can arrive in either order). */
export function isNewer(candidate: { updated_at: string }, current: { updated_at: string } | undefined): boolean {
  return !current || candidate.updated_at >= current.updated_at;
}

/** A share as a percentage with one decimal: "16.7%", "0%", "100%". */
export function formatRate(rate: number): string {
  const percent = rate * 100;
  return `${Number.isInteger(percent) ? percent : percent.toFixed(1)}%`;
}
