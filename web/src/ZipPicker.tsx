// Choosing a zip: a file picker and a drop zone in one; shows the chosen file's name and size, or why it cannot go.
import { useId, useState, type DragEvent } from 'react';
import { formatBytes, zipProblem } from './zip-file';

export function ZipPicker(props: {
  file: File | null;
  onChange: (file: File | null) => void;
  disabled?: boolean;
  /** The input's accessible name. */
  label: string;
  testId: string;
}) {
  const inputId = useId();
  const [over, setOver] = useState(false);
  const problem = props.file && zipProblem(props.file);

  const take = (files: FileList | null) => {
    const file = files?.[0];
    if (file) props.onChange(file);
  };
  // Only drags that carry files light the zone up (not a dragged text selection).
  const carriesFiles = (event: DragEvent) => event.dataTransfer.types.includes('Files');
  const onDragOver = (event: DragEvent) => {
    if (props.disabled || !carriesFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = 'copy';
    setOver(true);
  };
  const onDrop = (event: DragEvent) => {
    event.preventDefault();
    setOver(false);
    if (!props.disabled) take(event.dataTransfer.files);
  };

  return (
    <div className={`drop-zone${over ? ' over' : ''}${props.file ? ' chosen' : ''}`} data-testid={props.testId}
      onDragOver={onDragOver} onDragEnter={onDragOver} onDragLeave={() => setOver(false)} onDrop={onDrop}>
      <input id={inputId} type="file" className="sr-only" accept=".zip,application/zip,application/x-zip-compressed" aria-label={props.label}
        disabled={props.disabled} onChange={(e) => { take(e.target.files); e.target.value = ''; }} />
      {props.file ? (
        <div className="chosen-file">
          <span className="file-icon" aria-hidden="true">zip</span>
          <span className="chosen-name" data-testid="chosen-name">{props.file.name}</span>
          <span className="muted" data-testid="chosen-size">{formatBytes(props.file.size)}</span>
          <label htmlFor={inputId} className="button" aria-hidden="true">Choose another…</label>
          <button type="button" className="link" onClick={() => props.onChange(null)} disabled={props.disabled}>Clear</button>
        </div>
      ) : (
        <div className="drop-prompt">
          <span>Drop a .zip here, or</span>
          <label htmlFor={inputId} className="button" aria-hidden="true">Choose a zip…</label>
        </div>
      )}
      {problem && <p className="drop-problem" role="alert" data-testid="zip-problem">{problem}</p>}
    </div>
  );
}
