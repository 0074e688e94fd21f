// Entry of the dashboard's analysis thread. Worker threads do not inherit the TypeScript
// loader registered in the main thread, so register tsx here, then load the job.
import { register } from 'tsx/esm/api';

register();
await import('./analysis-job.ts');
