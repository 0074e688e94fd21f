/**
 * `--model PATH` as every command takes it, in any of the forms symprune reads:
 *  - a Hugging Face folder: config.json + model.safetensors (or shards with
 *    model.safetensors.index.json), F32/F16/BF16; built into an ONNX graph by the
 *    project's LLaMA builder with module-named weights;
 *  - an ONNX file, or a folder holding one (model.onnx, decoder_model_merged.onnx,
 *    decoder_model.onnx, also under onnx/ as onnx-community lays them out): symprune's
 *    own, torch.onnx's or an Optimum export;
 *  - nothing: the bundled model in `<repo>/models/brown-llama`.
 *
 * resolveModel() is cheap and validates (config fields, shard files, safetensors headers
 * come later in loadModelGraph); commands call it before doing work so bad input fails
 * first. loadModelGraph() then gives the runnable ONNX graph every command uses.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { InputError } from '../errors.ts';
import { loadModel } from '../onnx/model-io.ts';
import type { ModelProto } from '../onnx/proto.ts';
import { buildLlama } from '../onnx/llama-builder.ts';
import type { LlamaConfig } from '../onnx/llama-config.ts';
import { llamaWeightSpecs, type LlamaWeights } from '../onnx/llama-weights.ts';
import { llamaConfigFromHf } from './hf-config.ts';
import { hfWeightFiles, openHfWeights, type HfWeights } from './hf-weights.ts';
import { prepareOnnxDecoder } from './onnx-forms.ts';

/** The repository root (this file is src/model/load.ts). */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BUNDLED_MODEL_DIR = path.join(REPO_ROOT, 'models', 'brown-llama');

/** ONNX file names looked for in a folder, in order (Optimum's names included). */
const ONNX_NAMES = ['model.onnx', 'decoder_model_merged.onnx', 'decoder_model.onnx'];

/** A model as given, before any weight is read. */
export interface ModelDescription {
  kind: 'onnx' | 'hf';
  /** The ONNX file (kind onnx) or the checkpoint folder (kind hf): the model's identity in reports. */
  modelPath: string;
  /** The folder holding the model. */
  dir: string;
  /** tokenizer.json beside the model (or, for onnx/ subfolders, one level up), when there is one. */
  tokenizerPath?: string;
  /** kind hf: the parsed config.json, and the model config derived from it. */
  hfConfig?: Record<string, unknown>;
  config?: LlamaConfig;
  /** The files whose bytes make up the model (hashing a model hashes these). */
  files: string[];
}

function findTokenizer(dir: string): string | undefined {
  for (const d of [dir, path.basename(dir) === 'onnx' ? path.dirname(dir) : null]) {
    if (!d) continue;
    const t = path.join(d, 'tokenizer.json');
    if (fs.existsSync(t)) return t;
  }
  return undefined;
}

function readJson(file: string): unknown {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new InputError(`${file}: not valid JSON (${(e as Error).message})`);
  }
}

function describeHf(dir: string): ModelDescription {
  const configFile = path.join(dir, 'config.json');
  const hfConfig = readJson(configFile) as Record<string, unknown>;
  const config = llamaConfigFromHf(hfConfig, configFile);
  const weights = hfWeightFiles(dir)!;
  return { kind: 'hf', modelPath: dir, dir, tokenizerPath: findTokenizer(dir), hfConfig, config, files: [configFile, ...weights.files.map((f) => path.join(dir, f))] };
}

function describeOnnx(file: string): ModelDescription {
  const dir = path.dirname(file);
  const data = [`${file}_data`, `${file}.data`].filter((f) => fs.existsSync(f));
  return { kind: 'onnx', modelPath: file, dir, tokenizerPath: findTokenizer(dir), files: [file, ...data] };
}

/**
 * Resolve `--model` (undefined or '' means the bundled model) into a description;
 * InputError when it is no model. `tokenizer` (`--tokenizer`) replaces the tokenizer
 * found beside the model.
 */
export function resolveModel(arg?: string, tokenizer?: string): ModelDescription {
  const d = describe(arg);
  if (tokenizer === undefined) return d;
  if (!fs.existsSync(tokenizer) || !fs.statSync(tokenizer).isFile()) throw new InputError(`--tokenizer ${tokenizer}: file not found`);
  return { ...d, tokenizerPath: path.resolve(tokenizer) };
}

function describe(arg?: string): ModelDescription {
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
  if (!st.isDirectory()) {
    if (p.endsWith('.safetensors') || p.endsWith('.json')) return describe(path.dirname(p));
    return describeOnnx(p);
  }
  // A Hugging Face folder wins over an ONNX file beside it; pass the .onnx path to choose that.
  if (fs.existsSync(path.join(p, 'config.json')) && hfWeightFiles(p)) return describeHf(p);
  for (const sub of ['', 'onnx']) {
    for (const name of ONNX_NAMES) {
      const f = path.join(p, sub, name);
      if (fs.existsSync(f)) return describeOnnx(f);
    }
  }
  throw new InputError(`model folder ${given ? arg : p} holds no model: expected config.json with model.safetensors (or model.safetensors.index.json), or model.onnx`);
}

/**
 * Read a Hugging Face checkpoint's weights by PyTorch name as float32, each tensor read
 * once (f16/bf16 widened while reading) and checked against the shape the config implies.
 */
export async function readHfModelWeights(d: ModelDescription): Promise<LlamaWeights> {
  const files = await openCheckedHfWeights(d);
  const w: LlamaWeights = new Map();
  try {
    for (const s of llamaWeightSpecs(d.config!)) w.set(s.name, await files.readFloat32(s.name));
  } finally {
    await files.close();
  }
  return w;
}

/**
 * Open a checkpoint's weight files with every tensor the config implies checked from the
 * headers alone (present, shaped as the config says, a float dtype), before any is read.
 */
export async function openCheckedHfWeights(d: ModelDescription): Promise<HfWeights> {
  const files = await openHfWeights(d.dir);
  try {
    for (const s of llamaWeightSpecs(d.config!)) {
      if (!files.has(s.name)) throw new InputError(`${d.dir}: the checkpoint has no tensor ${s.name}, which config.json implies`);
      const e = files.entry(s.name);
      if (e.shape.join(',') !== s.shape.join(',')) throw new InputError(`${d.dir}: tensor ${s.name} has shape [${e.shape.join(', ')}], but config.json implies [${s.shape.join(', ')}]`);
      if (!['F32', 'F16', 'BF16'].includes(e.dtype)) throw new InputError(`${d.dir}: tensor ${s.name} is ${e.dtype}; only F32, F16 and BF16 checkpoints are read (quantized ones are not)`);
    }
  } catch (e) {
    await files.close();
    throw e;
  }
  return files;
}

/**
 * The dtype each weight is stored in, by PyTorch name (`bfloat16`, `float16`, `float32`),
 * for a Hugging Face checkpoint (its graph computes in float32 whatever the files hold);
 * null for ONNX models, whose initializers are as stored.
 */
export async function storedDtypes(d: ModelDescription): Promise<Map<string, string> | null> {
  if (d.kind !== 'hf') return null;
  const names: Record<string, string> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16' };
  const files = await openHfWeights(d.dir);
  try {
    const out = new Map(files.layout.flatMap((l) => l.names).map((n) => [n, names[files.entry(n).dtype] ?? files.entry(n).dtype]));
    const embed = out.get('model.embed_tokens.weight');
    if (d.config!.tieWordEmbeddings && embed && !out.has('lm_head.weight')) out.set('lm_head.weight', embed); // the tied head is the embedding
    return out;
  } finally {
    await files.close();
  }
}

/** The runnable ONNX graph of a model in any form (Optimum caches fed as empty, quantized graphs refused). */
export async function loadModelGraph(d: ModelDescription): Promise<ModelProto> {
  return (await loadModelForms(d)).model;
}

/**
 * The runnable graph and the model as stored, for writing back: for an Optimum decoder
 * the original keeps its KV cache and shares its weight tensors with the runnable graph,
 * so pruning one prunes the other. For every other form the two are the same object.
 */
export async function loadModelForms(d: ModelDescription): Promise<{ model: ModelProto; original: ModelProto }> {
  if (d.kind === 'hf') {
    const model = buildLlama(d.config!, await readHfModelWeights(d), { consume: true });
    return { model, original: model };
  }
  const original = await loadModel(d.modelPath);
  return { model: prepareOnnxDecoder(original, d.modelPath), original };
}

/**
 * A model's content hash: the ONNX file (as runs stored before HF folders were read
 * hashed it), or a checkpoint's config.json and weight files in order.
 */
export async function modelSha256(d: ModelDescription): Promise<string> {
  const h = createHash('sha256');
  for (const f of d.kind === 'onnx' ? [d.modelPath] : d.files) {
    for await (const chunk of fs.createReadStream(f)) h.update(chunk as Buffer);
  }
  return h.digest('hex');
}
