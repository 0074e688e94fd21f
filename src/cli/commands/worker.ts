/** `symprune worker`: evaluate candidates of searches sent to a job queue, on this machine. */
import { resolve } from 'node:path';
import type { CommandModule } from 'yargs';
import { InputError } from '../../errors.ts';
import { redisConnection } from '../../eval/queue.ts';
import { runQueueWorker } from '../../eval/queue-worker.ts';
import { checkDeviceFlags } from '../../onnx/session.ts';
import { faultFromEnv } from './search.ts';
import { choiceFlag, inputDirsFlag, numberFlag, stringFlag, threadsFlag } from '../validate.ts';

interface Args {
  queue: string;
  'model-root'?: string[];
  device?: string;
  threads?: number;
  'lock-seconds'?: number;
}

export const workerCommand: CommandModule<object, Args> = {
  command: 'worker',
  describe: 'evaluate candidates for searches started with --queue (run one per machine or GPU)',
  builder: (y) =>
    y
      .option('queue', stringFlag('queue', { demandOption: true, describe: 'the job queue: redis://HOST:PORT' }))
      .option('model-root', inputDirsFlag('model-root', { describe: 'folder holding the models and statistics files (found by sha256); default: the paths the search names (shared filesystem)' }))
      .option('device', choiceFlag('device', ['cpu', 'cuda'], { describe: 'onnxruntime execution provider (default cpu)' }))
      .option('threads', threadsFlag('onnxruntime threads per evaluation (default 1)'))
      .option('lock-seconds', numberFlag('lock-seconds', { min: 0, minExclusive: true, describe: 'a job this worker stops answering for goes to another worker after this long (default 30)' })) as never,
  handler: async (a) => {
    const connection = redisConnection(a.queue, '--queue');
    const { device, threads } = checkDeviceFlags(a.device, a.threads);
    const lock = a['lock-seconds'] ?? 30;
    if (!(lock > 0)) throw new InputError(`--lock-seconds ${lock}: must be a positive number`);
    const roots = (a['model-root'] ?? []).map((r) => resolve(r));
    const stop = new AbortController();
    const onSignal = (): void => {
      process.stderr.write('symprune worker: stopping after the job in progress\n');
      stop.abort();
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    const fault = faultFromEnv();
    const r = await runQueueWorker({
      connection,
      modelRoots: roots,
      threads: threads ?? 1,
      device,
      lockMs: lock * 1000,
      signal: stop.signal,
      log: (l) => process.stderr.write(`symprune worker: ${l}\n`),
      fault,
    });
    process.stderr.write(`symprune worker: ${r.jobs} jobs done\n`);
  },
};
