// Polls until `probe` gives a value (not undefined), or fails the test naming what it waited for.
export async function eventually<T>(what: string, probe: () => Promise<T | undefined>, ms = 60_000, everyMs = 25): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}
