// Functions this tab just created: their page shows the deployment even if it was already done when it opened.
// Its own module, so the create page does not pull in the function page's chunk.
const justCreated = new Set<string>();

export const markCreated = (id: string): void => void justCreated.add(id);

/** True once for a function markCreated was called for. */
export const takeCreated = (id: string): boolean => justCreated.delete(id);
