// Entry of a SparseGPT worker thread run from the TypeScript source: worker threads do
// not inherit the loader registered in the main thread, so register tsx here first.
import { register } from 'tsx/esm/api';

register();
await import('./sparsegpt-worker.ts');
