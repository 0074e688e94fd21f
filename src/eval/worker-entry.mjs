// Entry of a piscina evaluation worker. Worker threads do not inherit the TypeScript
// loader registered in the main thread, so register tsx here, then load the handler.
import { register } from 'tsx/esm/api';

register();
const mod = await import('./worker.ts');
export default mod.default;
