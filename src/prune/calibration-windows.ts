/**
 * Calibration windows as Wanda's loader makes them (n random windows of seqlen tokens,
 * seeded), from any data spec, with token ids checked against the model's vocabulary;
 * or, from a 2-D .npy [n, seqlen], the samples as the user saved them.
 */
import { checkVocab, loadTokens } from '../data/dataset.ts';
import { sampleWindows } from '../data/windows.ts';
import { npyShape, readNpyRows } from '../data/token-files.ts';
import { InputError } from '../errors.ts';
import type { ModelProto } from '../onnx/proto.ts';
import { tensorDims } from '../onnx/tensor.ts';

export const DEFAULT_CALIBRATION_DATA = 'brown:calib';
export const DEFAULT_NSAMPLES = 128;
export const DEFAULT_SEQLEN = 128;
export const CALIBRATION_SEED = 0;

/** Vocabulary size of a decoder: the fixed last dim of `logits`, else the rows of the embedding Gather table. */
export function modelVocabSize(model: ModelProto): number | undefined {
  const g = model.graph;
  const logits = (g?.output ?? []).find((o) => o.name === 'logits');
  const dims = logits?.type?.tensorType?.shape?.dim ?? [];
  const last = dims[dims.length - 1];
  if (last?.dimValue && Number(last.dimValue) > 0) return Number(last.dimValue);
  const gather = (g?.node ?? []).find((n) => n.opType === 'Gather' && n.input?.[1] === 'input_ids');
  const table = gather ? (g?.initializer ?? []).find((t) => t.name === gather.input![0]) : undefined;
  return table ? tensorDims(table)[0] : undefined;
}

export interface WindowSpec {
  data?: string;
  nsamples?: number;
  seqlen?: number;
  seed?: number;
  tokenizerPath?: string;
  vocabSize?: number;
}

/** [n, seqlen] when the data spec is a 2-D .npy of samples (used as given, row by row), else null. */
export function calibrationSamplesShape(data?: string): [number, number] | null {
  if (!data || !/\.npy$/i.test(data)) return null;
  const shape = npyShape(data);
  return shape.length === 2 ? (shape as [number, number]) : null;
}

/**
 * The number of windows and their length for a spec: a 2-D .npy [n, seqlen] fixes them
 * (nsamples defaults to n, seqlen to the row length; a different seqlen, or more samples
 * than rows, is an error), otherwise the given values or the defaults (128 x 128).
 */
export function calibrationShape(s: { data?: string; nsamples?: number; seqlen?: number }): { nsamples: number; seqlen: number; samples: boolean } {
  const shape = calibrationSamplesShape(s.data);
  if (!shape) return { nsamples: s.nsamples ?? DEFAULT_NSAMPLES, seqlen: s.seqlen ?? DEFAULT_SEQLEN, samples: false };
  const [n, len] = shape;
  if (s.seqlen !== undefined && s.seqlen !== len) throw new InputError(`--seqlen ${s.seqlen}: ${s.data} holds samples of ${len} tokens ([${n}, ${len}]); leave --seqlen out or give ${len}`);
  if (s.nsamples !== undefined && s.nsamples > n) throw new InputError(`--nsamples ${s.nsamples}: ${s.data} holds only ${n} samples ([${n}, ${len}])`);
  return { nsamples: s.nsamples ?? n, seqlen: len, samples: true };
}

export function checkWindowSpec(s: WindowSpec): void {
  const n = s.nsamples ?? DEFAULT_NSAMPLES;
  const t = s.seqlen ?? DEFAULT_SEQLEN;
  if (!Number.isInteger(n) || n < 1) throw new InputError(`--nsamples ${n}: must be a positive integer`);
  if (!Number.isInteger(t) || t < 2) throw new InputError(`--seqlen ${t}: must be an integer of at least 2`);
}

/**
 * The calibration windows of a spec (default 128 x 128 tokens of brown:calib, seed 0);
 * a 2-D .npy [n, seqlen] gives its first nsamples rows, in order, as they are.
 */
export async function loadCalibrationWindows(s: WindowSpec): Promise<Int32Array[]> {
  checkWindowSpec(s);
  const shape = calibrationShape(s);
  if (shape.samples) {
    const rows = readNpyRows(s.data!).slice(0, shape.nsamples);
    if (s.vocabSize !== undefined) rows.forEach((r, i) => checkVocab(r, s.vocabSize!, `${s.data} sample ${i}`));
    return rows;
  }
  const tokens = await loadTokens(s.data ?? DEFAULT_CALIBRATION_DATA, { tokenizerPath: s.tokenizerPath, vocabSize: s.vocabSize });
  const seqlen = s.seqlen ?? DEFAULT_SEQLEN;
  if (tokens.length <= seqlen) throw new InputError(`--data ${s.data ?? DEFAULT_CALIBRATION_DATA}: ${tokens.length} tokens, fewer than one window of ${seqlen + 1}`);
  return sampleWindows(tokens, s.nsamples ?? DEFAULT_NSAMPLES, seqlen, s.seed ?? CALIBRATION_SEED);
}
