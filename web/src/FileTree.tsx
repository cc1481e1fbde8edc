// A package's files as a tree: directories collapsible, sorted, with sizes. Only open directories render their
// children, and a directory shows its first entries with a button for the rest, so 10,000 files stay fast.
import { useState } from 'react';
import type { DirNode, TreeNode } from './file-tree';
import { formatBytes } from './zip-file';

/** Entries shown per directory before "Show N more". */
const pageSize = 300;

export function FileTree(props: {
  root: DirNode;
  open: Set<string>;
  onToggle: (path: string) => void;
  selected: string | null;
  onSelect: (path: string) => void;
}) {
  return (
    <ul className="file-tree" role="tree" aria-label="Package files" data-testid="file-tree">
      <Entries dir={props.root} depth={0} {...props} />
    </ul>
  );
}

function Entries(props: {
  dir: DirNode;
  depth: number;
  open: Set<string>;
  onToggle: (path: string) => void;
  selected: string | null;
  onSelect: (path: string) => void;
}) {
  const [shown, setShown] = useState(pageSize);
  const { dir, depth } = props;
  const rest = dir.children.length - shown;
  return (
    <>
      {dir.children.slice(0, shown).map((node) => <Entry key={node.path} node={node} {...props} />)}
      {rest > 0 && (
        <li role="none" style={{ paddingLeft: indent(depth) }}>
          <button type="button" className="link" onClick={() => setShown((n) => n + pageSize)}>
            Show {Math.min(rest, pageSize)} more of {rest}
          </button>
        </li>
      )}
    </>
  );
}

const indent = (depth: number) => `${depth * 16 + 6}px`;

function Entry(props: {
  node: TreeNode;
  depth: number;
  open: Set<string>;
  onToggle: (path: string) => void;
  selected: string | null;
  onSelect: (path: string) => void;
}) {
  const { node, depth } = props;
  if (node.kind === 'file') {
    const selected = props.selected === node.path;
    return (
      <li role="treeitem" aria-selected={selected} data-testid="tree-file" data-path={node.path}>
        <button type="button" className={`tree-row${selected ? ' selected' : ''}`} style={{ paddingLeft: indent(depth) }}
          onClick={() => props.onSelect(node.path)} title={node.path}>
          <span className="tree-icon" aria-hidden="true">·</span>
          <span className="tree-name">{node.name}</span>
          <span className="tree-size" data-testid="file-size">{formatBytes(node.size)}</span>
        </button>
      </li>
    );
  }
  const open = props.open.has(node.path);
  return (
    <li role="treeitem" aria-expanded={open} data-testid="tree-dir" data-path={node.path}>
      <button type="button" className="tree-row dir" style={{ paddingLeft: indent(depth) }} onClick={() => props.onToggle(node.path)} title={node.path}>
        <span className="tree-icon" aria-hidden="true">{open ? '▾' : '▸'}</span>
        <span className="tree-name">{node.name}/</span>
        <span className="tree-size"><span className="muted">{node.files.toLocaleString('en')} {node.files === 1 ? 'file' : 'files'} · </span>{formatBytes(node.size)}</span>
      </button>
      {open && (
        <ul role="group">
          <Entries {...props} dir={node} depth={depth + 1} />
        </ul>
      )}
    </li>
  );
}
