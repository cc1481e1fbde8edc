// JSON nesting depth, checked without recursion so that a hostile value of any depth is safe to inspect.

/** Whether arrays/objects in `value` nest more than `levels` deep. */
export function nestsDeeperThan(value: unknown, levels: number): boolean {
  const stack: Array<[unknown, number]> = [[value, 0]];
  for (let item = stack.pop(); item; item = stack.pop()) {
    const [node, depth] = item;
    if (node === null || typeof node !== 'object') continue;
    if (depth >= levels) return true;
    for (const child of Object.values(node)) stack.push([child, depth + 1]);
  }
  return false;
}
