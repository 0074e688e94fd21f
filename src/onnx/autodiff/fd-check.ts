/**
 * Central finite differences against the emitted gradient graph: the independent check
 * behind every gradient rule, and a tool to validate gradients of a new model.
 */
import seedrandom from 'seedrandom';
import { onnx, type ModelProto } from '../proto.ts';
import { valueInfo } from '../graph-build.ts';
import { tensorToFloat32, tensorDims } from '../tensor.ts';
import { createSession, ort } from '../session.ts';
import { check } from '../../errors.ts';
import { buildGradientGraph, gradName } from './grad-graph.ts';

/** The model with the named initializers turned into graph inputs (ORT ignores feeds of initializers). */
export function withInputs(model: ModelProto, names: string[]): ModelProto {
  const graph = model.graph!;
  const set = new Set(names);
  const moved = (graph.initializer ?? []).filter((t) => set.has(t.name!));
  const already = new Set((graph.input ?? []).map((v) => v.name!));
  return onnx.ModelProto.create({
    ...model,
    graph: {
      ...graph,
      initializer: (graph.initializer ?? []).filter((t) => !set.has(t.name!)),
      input: [...(graph.input ?? []), ...moved.filter((t) => !already.has(t.name!)).map((t) => valueInfo(t.name!, t.dataType!, tensorDims(t)))],
    },
  });
}

export interface FdPoint {
  tensor: string;
  index: number;
  analytic: number;
  numeric: number;
  /** Largest |gradient| of this tensor, for a scale-aware tolerance. */
  scale: number;
}

export interface FdOptions {
  loss: string;
  wrt: string[];
  /** Feeds for the graph inputs that are not wrt initializers. */
  feeds: Record<string, ort.Tensor>;
  eps?: number;
  /** Coordinates checked per wrt tensor (all when it has fewer). */
  coords?: number;
  seed?: string;
}

/** Compare emitted gradients with (f(x+eps) - f(x-eps)) / 2eps on chosen coordinates. */
export async function finiteDifferenceCheck(model: ModelProto, opts: FdOptions): Promise<FdPoint[]> {
  const eps = opts.eps ?? 1e-2;
  const rng = seedrandom(opts.seed ?? 'fd');
  const inits = new Map((model.graph!.initializer ?? []).map((t) => [t.name!, t]));
  const values: Record<string, ort.Tensor> = {};
  for (const w of opts.wrt) {
    const t = inits.get(w);
    if (t) values[w] = new ort.Tensor('float32', tensorToFloat32(t), tensorDims(t));
    else {
      check(opts.feeds[w], `fd-check: no value for '${w}'`);
      values[w] = opts.feeds[w]!;
    }
  }
  const feeds = { ...opts.feeds, ...values };
  const gradModel = await buildGradientGraph(model, { loss: opts.loss, wrt: opts.wrt, feeds, weightsAsInputs: true });
  const fwdModel = withInputs(model, opts.wrt);
  fwdModel.graph!.output = [{ name: opts.loss }];
  const gs = await createSession(gradModel, { threads: 1 });
  const fs = await createSession(fwdModel, { threads: 1 });
  const pick = (s: ort.InferenceSession, f: Record<string, ort.Tensor>) => Object.fromEntries(s.inputNames.map((n) => [n, f[n]!]));
  const gres = await gs.run(pick(gs, feeds));
  const points: FdPoint[] = [];
  for (const w of opts.wrt) {
    const g = gres[gradName(w)]!.data as Float32Array;
    const base = values[w]!;
    const data = Float32Array.from(base.data as Float32Array);
    let scale = 0;
    for (const v of g) scale = Math.max(scale, Math.abs(v));
    const n = data.length;
    const idx = n <= (opts.coords ?? 24) ? Array.from({ length: n }, (_, i) => i)
      : Array.from({ length: opts.coords ?? 24 }, () => Math.floor(rng() * n));
    for (const i of idx) {
      const orig = data[i]!;
      const run = async (v: number) => {
        data[i] = v;
        const f = { ...feeds, [w]: new ort.Tensor('float32', Float32Array.from(data), base.dims) };
        const r = await fs.run(pick(fs, f));
        return Number((r[opts.loss]!.data as Float32Array)[0]);
      };
      const up = await run(orig + eps);
      const down = await run(orig - eps);
      data[i] = orig;
      points.push({ tensor: w, index: i, analytic: g[i]!, numeric: (up - down) / (2 * eps), scale });
    }
  }
  await gs.release();
  await fs.release();
  return points;
}

/** Points that disagree beyond atol*scale + rtol*|numeric|. */
export function fdMismatches(points: FdPoint[], rtol = 2e-2, atol = 2e-3): FdPoint[] {
  return points.filter((p) => !(Math.abs(p.analytic - p.numeric) <= atol * Math.max(p.scale, 1e-3) + rtol * Math.abs(p.numeric)));
}
