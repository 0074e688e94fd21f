/**
 * `--model PATH` as every command takes it: a `.onnx` file, or a folder holding
 * `model.onnx` (and usually `tokenizer.json`); nothing means the bundled model in
 * `<repo>/models/brown-llama`, found from this file's location so it works from any
 * working directory.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { InputError } from '../errors.ts';

/** The repository root (this file is src/cli/model-path.ts). */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BUNDLED_MODEL_DIR = path.join(REPO_ROOT, 'models', 'brown-llama');

export interface ResolvedModel {
  modelPath: string;
  /** The folder holding the model (external data and the tokenizer live beside it). */
  dir: string;
  /** tokenizer.json beside the model, when there is one. */
  tokenizerPath?: string;
}

export function resolveModel(arg?: string): ResolvedModel {
  const given = arg !== undefined && arg !== '';
  const p = path.resolve(given ? arg : BUNDLED_MODEL_DIR);
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch {
    throw new InputError(
      given ? `model not found: ${arg}` : `the bundled model is missing (${p}); build it with: symprune train --config models/brown-llama.train.json --out models/brown-llama`,
    );
  }
  let modelPath = p;
  if (st.isDirectory()) {
    modelPath = path.join(p, 'model.onnx');
    if (!fs.existsSync(modelPath)) throw new InputError(`model folder ${given ? arg : p} holds no model.onnx`);
  }
  const dir = path.dirname(modelPath);
  const tok = path.join(dir, 'tokenizer.json');
  return { modelPath, dir, tokenizerPath: fs.existsSync(tok) ? tok : undefined };
}
