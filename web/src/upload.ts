// A package upload from the browser: the zip read as base64, then sent with progress, then the server's answer.
import type { UploadProgress } from './api';
import { base64Of, zipProblem } from './zip-file';

export type Upload =
  | { phase: 'reading'; done: number; total: number }
  | { phase: 'sending'; done: number; total: number }
  /** All sent: the server checks the zip, stores it and (on an update) loads it. */
  | { phase: 'waiting' };

/** Reads `file`, hands its base64 to `send` (an API call with upload progress) and reports each step. */
export async function uploadZip<T>(
  file: File,
  send: (base64: Blob, onProgress: (progress: UploadProgress) => void) => Promise<T>,
  report: (upload: Upload) => void,
): Promise<T> {
  const problem = zipProblem(file);
  if (problem) throw new Error(problem);
  report({ phase: 'reading', done: 0, total: file.size });
  const base64 = await base64Of(file, (done, total) => report({ phase: 'reading', done, total }));
  report({ phase: 'sending', done: 0, total: base64.size });
  return send(base64, ({ sent, total }) => report(sent >= total ? { phase: 'waiting' } : { phase: 'sending', done: sent, total }));
}
