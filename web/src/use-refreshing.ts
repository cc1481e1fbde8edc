// A value read from the API and read again when something says it changed: at most once per `throttleMs` (a
// call inside the pause is done at its end, so the last change is always read), every `intervalMs`, and when
// the tab comes back into view. An answer older than the one shown is dropped.
import { useCallback, useEffect, useRef, useState } from 'react';

export interface Refreshing<T> {
  value: T | null;
  error: Error | null;
  /** Read again soon (throttled). */
  refresh: () => void;
}

export function useRefreshing<T>(load: () => Promise<T>, options: { throttleMs: number; intervalMs: number }): Refreshing<T> {
  const { throttleMs, intervalMs } = options;
  const [value, setValue] = useState<T | null>(null);
  const [error, setError] = useState<Error | null>(null);
  const started = useRef(0);
  const applied = useRef(0);
  const lastRun = useRef(-Infinity);
  const timer = useRef<ReturnType<typeof setTimeout> | null>(null);
  const loadRef = useRef(load);
  loadRef.current = load;

  const run = useCallback(() => {
    timer.current = null;
    lastRun.current = performance.now();
    const mine = ++started.current;
    loadRef.current().then(
      (answer) => {
        if (mine < applied.current) return;
        applied.current = mine;
        setValue(answer);
        setError(null);
      },
      (caught: Error) => {
        if (mine >= applied.current) setError(caught);
      },
    );
  }, []);

  const refresh = useCallback(() => {
    if (timer.current !== null) return;
    timer.current = setTimeout(run, Math.max(0, lastRun.current + throttleMs - performance.now()));
  }, [run, throttleMs]);

  // A new `load` (another range, another function) starts over: nothing of the old one is shown.
  useEffect(() => {
    setValue(null);
    applied.current = ++started.current;
    run();
  }, [load, run]);

  useEffect(() => {
    const interval = setInterval(refresh, intervalMs);
    const onVisible = () => {
      if (document.visibilityState === 'visible') refresh();
    };
    document.addEventListener('visibilitychange', onVisible);
    return () => {
      clearInterval(interval);
      document.removeEventListener('visibilitychange', onVisible);
      if (timer.current !== null) clearTimeout(timer.current);
      timer.current = null;
    };
  }, [refresh, intervalMs]);

  return { value, error, refresh };
}
