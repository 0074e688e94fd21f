/**
 * The flags every command that runs a model shares: --device, --threads and
 * --max-memory (above which a model is run block by block).
 */
import type { Argv } from 'yargs';
import { checkDeviceFlags, setSessionDefaults, type Device } from '../onnx/session.ts';
import { parseMaxMemory } from '../eval/perplexity-stream.ts';
import { choiceFlag, stringFlag, threadsFlag } from './validate.ts';

export interface DeviceArgs {
  device?: string;
  threads?: number;
  'max-memory'?: string;
}

/** Add --device and --max-memory (and --threads when the command has none yet). */
export function deviceFlags<T>(y: Argv<T>, withThreads = false): Argv<T> {
  const z = y
    .option('device', choiceFlag('device', ['cpu', 'cuda'], { default: 'cpu', describe: "onnxruntime execution provider (cuda needs onnxruntime-node's CUDA binaries)" }))
    .option('max-memory', stringFlag('max-memory', { describe: 'memory budget (e.g. 12G); larger models run block by block (default: half of the RAM)' }));
  return (withThreads ? z.option('threads', threadsFlag()) : z) as Argv<T>;
}

/** Check the flags and make them every session's defaults; returns the memory budget in bytes. */
export function applyDeviceFlags(a: DeviceArgs): { device: Device; maxMemory: number } {
  const d = checkDeviceFlags(a.device, a.threads);
  const maxMemory = parseMaxMemory(a['max-memory']);
  setSessionDefaults(d);
  return { device: d.device, maxMemory };
}
