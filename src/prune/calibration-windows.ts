/**
 * Calibration windows as Wanda's loader makes them (n random windows of seqlen tokens,
 * seeded), from any data spec, with token ids checked against the model's vocabulary.
 */
import { loadTokens } from '../data/dataset.ts';
import { sampleWindows } from '../data/windows.ts';
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

export function checkWindowSpec(s: WindowSpec): void {
  const n = s.nsamples ?? DEFAULT_NSAMPLES;
  const t = s.seqlen ?? DEFAULT_SEQLEN;
  if (!Number.isInteger(n) || n < 1) throw new InputError(`--nsamples ${n}: must be a positive integer`);
  if (!Number.isInteger(t) || t < 2) throw new InputError(`--seqlen ${t}: must be an integer of at least 2`);
}

/** The calibration windows of a spec (default 128 x 128 tokens of brown:calib, seed 0). */
export async function loadCalibrationWindows(s: WindowSpec): Promise<Int32Array[]> {
  checkWindowSpec(s);
  const tokens = await loadTokens(s.data ?? DEFAULT_CALIBRATION_DATA, { tokenizerPath: s.tokenizerPath, vocabSize: s.vocabSize });
  const seqlen = s.seqlen ?? DEFAULT_SEQLEN;
  if (tokens.length <= seqlen) throw new InputError(`--data ${s.data ?? DEFAULT_CALIBRATION_DATA}: ${tokens.length} tokens, fewer than one window of ${seqlen + 1}`);
  return sampleWindows(tokens, s.nsamples ?? DEFAULT_NSAMPLES, seqlen, s.seed ?? CALIBRATION_SEED);
}
