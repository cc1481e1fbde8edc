// A package's files as a tree: directories collapsible, sorted, with sizes. Only open directories render their
// children, and a directory shows its first entries with a button for the rest, so 10,000 files stay fast.
import { useState } from 'react';
import type { DirNode, TreeNode } from './file-tree';
import { formatBytes } from './zip-file';

/** Entries shown per directory before "Show N more". */
const pageSize = 300;

/** What every row needs of the tree's state. */
interface TreeState {
  open: Set<string>;
  onToggle: (path: string) => void;
  selected: string | null;
  onSelect: (path: string) => void;
}

export function FileTree({ root, ...state }: TreeState & { root: DirNode }) {
  return (
    <ul className="file-tree" role="tree" aria-label="Package files" data-testid="file-tree">
      <Entries dir={root} depth={0} state={state} />
    </ul>
  );
}

function Entries({ dir, depth, state }: { dir: DirNode; depth: number; state: TreeState }) {
  const [shown, setShown] = useState(pageSize);
  const rest = dir.children.length - shown;
  return (
    <>
      {dir.children.slice(0, shown).map((node) => <Entry key={node.path} node={node} depth={depth} state={state} />)}
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

function Entry({ node, depth, state }: { node: TreeNode; depth: number; state: TreeState }) {
  if (node.kind === 'file') {
    const selected = state.selected === node.path;
    return (
      <li role="treeitem" aria-selected={selected} data-testid="tree-file" data-path={node.path}>
        <button type="button" className={`tree-row${selected ? ' selected' : ''}`} style={{ paddingLeft: indent(depth) }}
          onClick={() => state.onSelect(node.path)} title={node.path}>
          <span className="tree-icon" aria-hidden="true">·</span>
          <span className="tree-name">{node.name}</span>
          <span className="tree-size" data-testid="file-size">{formatBytes(node.size)}</span>
        </button>
      </li>
    );
  }
  const open = state.open.has(node.path);
  return (
    <li role="treeitem" aria-expanded={open} data-testid="tree-dir" data-path={node.path}>
      <button type="button" className="tree-row dir" style={{ paddingLeft: indent(depth) }} onClick={() => state.onToggle(node.path)} title={node.path}>
        <span className="tree-icon" aria-hidden="true">{open ? '▾' : '▸'}</span>
        <span className="tree-name">{node.name}/</span>
        <span className="tree-size"><span className="muted">{node.files.toLocaleString('en')} {node.files === 1 ? 'file' : 'files'} · </span>{formatBytes(node.size)}</span>
      </button>
      {open && (
        <ul role="group">
          <Entries dir={node} depth={depth + 1} state={state} />
        </ul>
      )}
    </li>
  );
}
