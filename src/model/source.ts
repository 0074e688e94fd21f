/**
 * A model in any form symprune reads, opened without reading its weights: the
 * runnable graph is in memory, each tensor's bytes are read when a block needs them
 * (ONNX external data tensor by tensor; a Hugging Face checkpoint tensor by tensor from
 * its safetensors, widened to float32 and laid out as the graph stores it). Small
 * models are then loaded whole (loadAll), large ones run block by block.
 */
import type { ModelProto, TensorProto } from '../onnx/proto.ts';
import { buildLlama, SKELETON_LOCATION } from '../onnx/llama-builder.ts';
import { floatTensor, transposeInto } from '../onnx/tensor.ts';
import { llamaWeightSpecs } from '../onnx/llama-weights.ts';
import { OnnxFileSource, type WeightSource } from '../onnx/weight-source.ts';
import type { HfWeights } from './hf-weights.ts';
import { loadModelForms, openCheckedHfWeights, type ModelDescription } from './load.ts';
import { prepareOnnxDecoder } from './onnx-forms.ts';

export interface ModelSource extends WeightSource {
  readonly description: ModelDescription;
  /** The whole model in memory: the runnable graph and the form it is written back in. */
  loadAll(): Promise<{ model: ModelProto; original: ModelProto }>;
  /** The stored form of the graph, for writing an ONNX output tensor by tensor. */
  readonly original: ModelProto;
}

/** A Hugging Face checkpoint as a weight source over the builder's graph of its config. */
class HfSource implements ModelSource {
  readonly model: ModelProto;
  private readonly kinds: Map<string, string>;
  private readonly byName: Map<string, TensorProto>;
  constructor(readonly description: ModelDescription, private readonly files: HfWeights) {
    const c = description.config!;
    this.model = buildLlama(c, new Map(), { skeleton: true });
    this.kinds = new Map(llamaWeightSpecs(c).map((s) => [s.name, s.kind]));
    this.byName = new Map((this.model.graph!.initializer ?? []).map((t) => [t.name!, t]));
  }
  get original(): ModelProto {
    return this.model;
  }

  async resolve(names: readonly string[]): Promise<TensorProto[]> {
    const out: TensorProto[] = [];
    for (const n of names) {
      const t = this.byName.get(n);
      if (!t) throw new Error(`no initializer ${n}`);
      if (t.externalData?.[0]?.value !== SKELETON_LOCATION) {
        out.push(t);
        continue;
      }
      const dims = (t.dims ?? []).map(Number);
      // A tied head is the embedding, transposed like every linear weight ([in, out] in the graph).
      const tied = n === 'lm_head.weight' && !this.files.has(n);
      const data = await this.files.readFloat32(tied ? 'model.embed_tokens.weight' : n);
      const linear = tied || this.kinds.get(n) === 'linear';
      out.push(floatTensor(n, dims, linear ? transposeInto(data, dims[1]!, dims[0]!) : data));
    }
    return out;
  }

  loadAll(): Promise<{ model: ModelProto; original: ModelProto }> {
    return loadModelForms(this.description);
  }

  close(): Promise<void> {
    return this.files.close();
  }
}

class OnnxSource implements ModelSource {
  constructor(readonly description: ModelDescription, private readonly file: OnnxFileSource) {}
  get model(): ModelProto {
    return this.file.model;
  }
  get original(): ModelProto {
    return this.file.original;
  }
  resolve(names: readonly string[]): Promise<TensorProto[]> {
    return this.file.resolve(names);
  }
  async loadAll(): Promise<{ model: ModelProto; original: ModelProto }> {
    return { model: await this.file.loadAll(), original: this.file.original };
  }
  close(): Promise<void> {
    return this.file.close();
  }
}

/** Open a described model as a weight source (see the file comment). */
export async function openModelSource(d: ModelDescription): Promise<ModelSource> {
  if (d.kind === 'hf') return new HfSource(d, await openCheckedHfWeights(d));
  return new OnnxSource(d, await OnnxFileSource.open(d.modelPath, (m) => prepareOnnxDecoder(m, d.modelPath)));
}
