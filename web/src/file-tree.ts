// A package's file list (`GET /package/files`: flat paths) as a tree of directories, sorted, with sizes.
import type { PackageFile } from './api';

export interface FileNode {
  kind: 'file';
  name: string;
  path: string;
  size: number;
}

export interface DirNode {
  kind: 'dir';
  name: string;
  /** '' for the root. */
  path: string;
  /** Bytes of every file below. */
  size: number;
  /** Files below, at any depth. */
  files: number;
  /** Directories first, then files, each by name. */
  children: TreeNode[];
}

export type TreeNode = DirNode | FileNode;

/** Code-point order, like `ls` in the C locale: stable whatever the browser's language. */
const byName = (a: TreeNode, b: TreeNode): number =>
  a.kind !== b.kind ? (a.kind === 'dir' ? -1 : 1) : a.name < b.name ? -1 : a.name > b.name ? 1 : 0;

export function buildTree(files: PackageFile[]): DirNode {
  const root: DirNode = { kind: 'dir', name: '', path: '', size: 0, files: 0, children: [] };
  // Directories by path while building, so 10,000 files cost one map lookup per path segment.
  const dirs = new Map<string, DirNode>([['', root]]);
  for (const file of files) {
    const parts = file.path.split('/').filter((part) => part !== '');
    const name = parts.pop();
    if (name === undefined) continue;
    let parent = root;
    const chain = [root];
    for (const part of parts) {
      const path = parent.path === '' ? part : `${parent.path}/${part}`;
      let dir = dirs.get(path);
      if (!dir) {
        dir = { kind: 'dir', name: part, path, size: 0, files: 0, children: [] };
        dirs.set(path, dir);
        parent.children.push(dir);
      }
      parent = dir;
      chain.push(dir);
    }
    parent.children.push({ kind: 'file', name, path: file.path, size: file.size });
    for (const dir of chain) {
      dir.size += file.size;
      dir.files += 1;
    }
  }
  for (const dir of dirs.values()) dir.children.sort(byName);
  return root;
}

/** Small packages open fully; big ones show their top level. node_modules starts closed either way. */
export const openAllUpTo = 200;

export function initiallyOpen(root: DirNode): Set<string> {
  const open = new Set<string>();
  if (root.files > openAllUpTo) return open;
  const visit = (dir: DirNode) => {
    for (const child of dir.children) {
      if (child.kind === 'dir' && child.name !== 'node_modules') {
        open.add(child.path);
        visit(child);
      }
    }
  };
  visit(root);
  return open;
}
