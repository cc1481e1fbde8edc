// A packaged function's package: what it is (sha256, sizes, files), a download, a new zip to deploy, and its
// files as a tree with a read-only view of the one clicked.
import { useEffect, useMemo, useState, type MouseEvent } from 'react';
import { api, apiToken, type FunctionRecord, type PackageFile, type PackageInfo } from './api';
import { FileTree } from './FileTree';
import { buildTree, initiallyOpen } from './file-tree';
import { FileViewer } from './FileViewer';
import { uploadZip, type Upload } from './upload';
import { UploadStatus } from './UploadStatus';
import { ErrorBox } from './ui';
import { formatBytes, zipProblem } from './zip-file';
import { ZipPicker } from './ZipPicker';

export function PackageView({ fn, pkg, onUpdated }: { fn: FunctionRecord; pkg: PackageInfo; onUpdated: (item: FunctionRecord) => void }) {
  return (
    <section className="card package-card" aria-labelledby="package-title" data-testid="package">
      <h2 id="package-title">Package</h2>
      <Summary fn={fn} pkg={pkg} />
      <NewPackage fn={fn} onUpdated={onUpdated} />
      <Files functionId={fn.id} sha256={pkg.sha256} />
    </section>
  );
}

function Summary({ fn, pkg }: { fn: FunctionRecord; pkg: PackageInfo }) {
  const [error, setError] = useState<Error | null>(null);
  // A plain link downloads without a token; with one, the zip is fetched with the header and saved from memory.
  const download = async (event: MouseEvent<HTMLAnchorElement>) => {
    if (!apiToken.get()) return;
    event.preventDefault();
    try {
      const url = URL.createObjectURL(new Blob([await api.packageZip(fn.id)], { type: 'application/zip' }));
      const link = document.createElement('a');
      link.href = url;
      link.download = `${fn.name}.zip`;
      link.click();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
    } catch (caught) {
      setError(caught as Error);
    }
  };
  return (
    <>
      <dl className="meta package-meta">
        <div><dt>SHA-256</dt><dd><code title={pkg.sha256} data-testid="package-sha">{pkg.sha256.slice(0, 12)}</code></dd></div>
        <div><dt>Zip size</dt><dd data-testid="package-size">{formatBytes(pkg.size)}</dd></div>
        <div><dt>Unpacked</dt><dd data-testid="package-unpacked">{formatBytes(pkg.unpacked_size)}</dd></div>
        <div><dt>Files</dt><dd data-testid="package-files">{pkg.files.toLocaleString('en')}</dd></div>
        <div><dt>Handler</dt><dd><code>{fn.handler}</code></dd></div>
      </dl>
      <div className="actions">
        <a className="button" href={api.packageUrl(fn.id)} download={`${fn.name}.zip`} onClick={(e) => void download(e)} data-testid="package-download">
          Download .zip
        </a>
      </div>
      {error && <ErrorBox title="Could not download the package" error={error} />}
    </>
  );
}

/** Upload a new zip: PUT with the package; the server loads it before it serves (a 400 keeps the old one). */
function NewPackage({ fn, onUpdated }: { fn: FunctionRecord; onUpdated: (item: FunctionRecord) => void }) {
  const [file, setFile] = useState<File | null>(null);
  const [upload, setUpload] = useState<Upload | null>(null);
  const [error, setError] = useState<Error | null>(null);
  const [done, setDone] = useState<FunctionRecord | null>(null);
  const busy = upload !== null;
  const send = async () => {
    if (!file || busy) return;
    setError(null);
    setDone(null);
    try {
      const item = await uploadZip(file, (base64, onProgress) => api.updatePackage(fn.id, base64, onProgress), setUpload);
      onUpdated(item);
      setDone(item);
      setFile(null);
    } catch (caught) {
      setError(caught as Error);
    } finally {
      setUpload(null);
    }
  };
  return (
    <div className="new-package">
      <h3>Deploy a new zip</h3>
      <ZipPicker file={file} onChange={(chosen) => { setFile(chosen); setError(null); setDone(null); }} disabled={busy} label="New zip file" testId="update-drop-zone" />
      <div className="actions">
        <button type="button" className="primary" onClick={() => void send()} disabled={!file || busy || zipProblem(file) !== null}>
          {busy ? 'Uploading…' : 'Upload and deploy'}
        </button>
        {done && (
          <span className="form-status" data-testid="package-result">
            Deployed v{done.version}: {done.package ? `${done.package.files.toLocaleString('en')} files, sha256 ${done.package.sha256.slice(0, 12)}` : 'no package'}
          </span>
        )}
      </div>
      {upload && <UploadStatus upload={upload} />}
      {error && <ErrorBox title="Could not deploy the new package" error={error} testId="package-error" />}
    </div>
  );
}

type Listing = { state: 'loading' } | { state: 'loaded'; files: PackageFile[] } | { state: 'failed'; error: Error };

function Files({ functionId, sha256 }: { functionId: string; sha256: string }) {
  const [listing, setListing] = useState<Listing>({ state: 'loading' });
  const [open, setOpen] = useState<Set<string> | null>(null);
  const [selected, setSelected] = useState<string | null>(null);

  // A new package (its sha256) brings a new list; the directories opened and the file shown stay if still there.
  useEffect(() => {
    let current = true;
    api.packageFiles(functionId).then(
      (files) => current && setListing({ state: 'loaded', files }),
      (error: Error) => current && setListing({ state: 'failed', error }),
    );
    return () => {
      current = false;
    };
  }, [functionId, sha256]);

  const files = listing.state === 'loaded' ? listing.files : null;
  const tree = useMemo(() => files && buildTree(files), [files]);
  const byPath = useMemo(() => new Map((files ?? []).map((file) => [file.path, file])), [files]);
  useEffect(() => {
    if (tree && open === null) setOpen(initiallyOpen(tree));
  }, [tree, open]);

  if (listing.state === 'failed') return <ErrorBox title="Could not list the package's files" error={listing.error} />;
  if (!tree || !open) return <p className="muted">Loading the files…</p>;
  const toggle = (path: string) => setOpen((current) => {
    const next = new Set(current);
    if (next.has(path)) next.delete(path);
    else next.add(path);
    return next;
  });
  const shown = selected === null ? undefined : byPath.get(selected);
  return (
    <div className="package-files">
      <h3>Files</h3>
      <div className="files-layout">
        <FileTree root={tree} open={open} onToggle={toggle} selected={selected} onSelect={setSelected} />
        {shown ? <FileViewer functionId={functionId} file={shown} revision={sha256} />
          : <p className="muted viewer-empty">Click a file to see its content.</p>}
      </div>
    </div>
  );
}
