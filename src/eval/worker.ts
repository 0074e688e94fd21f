/**
 * A thread of the local evaluation pool (run by piscina through worker-entry.mjs, or as
 * worker.js once compiled). The model, the layer statistics and the fitness tokens come in
 * shared memory, handed over once in workerData; tasks are CandidateWorker's.
 */
import { threadId, workerData } from 'node:worker_threads';
import { decodeModel } from '../onnx/proto.ts';
import { setSessionDefaults, type Device } from '../onnx/session.ts';
import { CandidateWorker, type LoadedJob, type WorkerFault, type WorkerReply, type WorkerTask } from './candidate-worker.ts';

export type { MaskReply, PplReply, WorkerLayer, WorkerReply, WorkerTask } from './candidate-worker.ts';

/** What each thread gets: a loaded job with its model still encoded; arrays live in SharedArrayBuffers. */
export interface WorkerInit extends Omit<LoadedJob, 'model'> {
  /** The encoded ONNX model. */
  model: Uint8Array;
  /** onnxruntime intra-op threads of each thread's session (default 1: the pool's threads are the parallelism). */
  threads?: number;
  /** Execution provider of the sessions (default cpu). */
  device?: Device;
  /** Fault injection for tests (the counter is shared by the pool's threads). */
  fault?: WorkerFault | null;
}

const init = workerData as WorkerInit;
if (init.device) setSessionDefaults({ device: init.device });
const worker = await CandidateWorker.create({ ...init, model: decodeModel(init.model) }, { id: threadId, threads: init.threads ?? 1, fault: init.fault ?? null });

export default function run(task: WorkerTask): Promise<WorkerReply<unknown>> {
  return worker.run(task);
}
