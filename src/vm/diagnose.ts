// Reads a dead guest's last console lines for the cause a user can act on.
const causes: Array<[RegExp, string]> = [
  [/JavaScript heap out of memory|Out of memory|deadlocked on memory|out_of_memory|oom-kill|oom_reaper|MemoryError|Cannot allocate memory/i, 'the guest ran out of memory'],
  [/Attempted to kill init|Kernel panic/i, 'the runtime process exited'],
];

/** A short cause for a guest that died, or null if the console says nothing useful. */
export function diagnose(consoleTail: string): string | null {
  for (const [pattern, cause] of causes) if (pattern.test(consoleTail)) return cause;
  return null;
}

export const outOfMemory = causes[0]![1];

/** How the watchdog reports a guest that stopped answering (qemu-vm.ts). */
export const hungGuest = 'guest stopped answering';

/** A VM failure's reason, sorted for metrics: out of memory, hung, or otherwise crashed. */
export function failureCause(reason: string): 'oom' | 'hang' | 'crash' {
  if (reason.startsWith(outOfMemory)) return 'oom';
  if (reason.startsWith(hungGuest)) return 'hang';
  return 'crash';
}
