// One file of a package, read-only: text in the code editor (highlighted by its extension), a note for binary or
// big files.
import { useEffect, useState } from 'react';
import { api, type PackageFile } from './api';
import { CodeEditor, type Language } from './CodeEditor';
import { ErrorBox } from './ui';
import { formatBytes } from './zip-file';

/** Larger files are not fetched: the download has them. */
export const viewableBytes = 2 ** 20;

const byExtension: Record<string, Language> = {
  js: 'javascript', mjs: 'javascript', cjs: 'javascript', jsx: 'javascript', ts: 'javascript', mts: 'javascript', cts: 'javascript', tsx: 'javascript',
  py: 'python', pyi: 'python',
  json: 'json', map: 'json',
};

export function languageOf(path: string): Language {
  const dot = path.lastIndexOf('.');
  return (dot > path.lastIndexOf('/') && byExtension[path.slice(dot + 1).toLowerCase()]) || 'text';
}

/** Text is valid UTF-8 without NUL bytes; anything else is shown as binary. */
function textOf(bytes: ArrayBuffer): string | null {
  const view = new Uint8Array(bytes);
  if (view.includes(0)) return null;
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(view);
  } catch {
    return null;
  }
}

type Content = { state: 'loading' } | { state: 'text'; text: string } | { state: 'binary' } | { state: 'failed'; error: Error };

export function FileViewer({ functionId, file, revision }: { functionId: string; file: PackageFile; revision: string }) {
  const tooBig = file.size > viewableBytes;
  const [content, setContent] = useState<Content>({ state: 'loading' });
  useEffect(() => {
    if (tooBig) return;
    let current = true;
    setContent({ state: 'loading' });
    api.packageFile(functionId, file.path).then(
      (bytes) => {
        if (!current) return;
        const text = textOf(bytes);
        setContent(text === null ? { state: 'binary' } : { state: 'text', text });
      },
      (error: Error) => current && setContent({ state: 'failed', error }),
    );
    return () => {
      current = false;
    };
    // `revision` (the package's sha256): a new package may change the file under the same path.
  }, [functionId, file.path, tooBig, revision]);

  return (
    <div className="file-viewer" data-testid="file-viewer" data-path={file.path}>
      <div className="editor-label">
        <span className="viewer-path" data-testid="viewer-path">{file.path}</span>
        <span className="muted">{formatBytes(file.size)} · read-only</span>
      </div>
      {tooBig ? (
        <p className="note" data-testid="file-note">This file is {formatBytes(file.size)}: files over {formatBytes(viewableBytes)} are not shown here; download the zip to read it.</p>
      ) : content.state === 'loading' ? (
        <p className="muted">Loading…</p>
      ) : content.state === 'binary' ? (
        <p className="note" data-testid="file-note">A binary file ({formatBytes(file.size)}): not shown as text.</p>
      ) : content.state === 'failed' ? (
        <ErrorBox title={`Could not read ${file.path}`} error={content.error} />
      ) : (
        <CodeEditor key={file.path} value={content.text} onChange={() => {}} language={languageOf(file.path)} label={`Content of ${file.path}`}
          height="clamp(200px, 46vh, 560px)" testId="file-content" readOnly />
      )}
    </div>
  );
}
