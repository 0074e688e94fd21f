/**
 * `symprune inspect`: the prunable linear layers of a model as discovery sees them
 * (PyTorch name, [out, in] shape, parameters) and totals, so a user can check what a
 * prune or search will touch before running it.
 */
import type { CommandModule } from 'yargs';
import { initializerStats } from '../../onnx/graph-edit.ts';
import { DataType } from '../../onnx/proto.ts';
import { discoverLayers } from '../../prune/discover.ts';
import { loadModelGraph, resolveModel, storedDtypes } from '../../model/load.ts';
import { booleanFlag, modelFlag } from '../validate.ts';

interface Args {
  model?: string;
  all?: boolean;
  json?: boolean;
}

const TYPE_NAMES: Record<number, string> = { [DataType.FLOAT]: 'float32', [DataType.FLOAT16]: 'float16' };

export const inspectCommand: CommandModule<object, Args> = {
  command: 'inspect',
  describe: 'list the prunable linear layers of a model ([out, in] shapes, parameters) and totals',
  builder: (y) =>
    y
      .option('model', modelFlag())
      .option('all', booleanFlag('also list lm_head and the token embedding'))
      .option('json', booleanFlag('print one JSON object')) as never,
  handler: async (a) => {
    const described = resolveModel(a.model);
    const { modelPath } = described;
    const model = await loadModelGraph(described);
    const layers = discoverLayers(model, { includeHead: a.all, includeEmbeddings: a.all });
    const stored = await storedDtypes(described); // an HF checkpoint's file dtypes (its graph is float32)
    const rows = layers.map((l) => ({
      name: l.name,
      shape: [l.out, l.in] as [number, number],
      params: l.out * l.in,
      block: l.block,
      dtype: stored?.get(`${l.name}.weight`) ?? TYPE_NAMES[l.dataType] ?? String(l.dataType),
      op: l.opType,
      initializer: l.initializer,
      node: l.nodeName,
    }));
    const params = rows.reduce((s, r) => s + r.params, 0);
    const modelParams = initializerStats(model).params;
    const blocks = new Set(layers.filter((l) => l.block >= 0).map((l) => l.block)).size;
    const totals = { layers: rows.length, blocks, params, modelParams, fraction: modelParams > 0 ? params / modelParams : 0 };
    if (a.json) {
      process.stdout.write(JSON.stringify({ model: modelPath, layers: rows, totals }) + '\n');
      return;
    }
    const nameW = Math.max(5, ...rows.map((r) => r.name.length));
    const shapeW = Math.max(9, ...rows.map((r) => `[${r.shape.join(', ')}]`.length));
    const lines = [`${modelPath}`, `${'layer'.padEnd(nameW)}  ${'[out, in]'.padEnd(shapeW)}  ${'params'.padStart(12)}  dtype`];
    for (const r of rows) lines.push(`${r.name.padEnd(nameW)}  ${`[${r.shape.join(', ')}]`.padEnd(shapeW)}  ${r.params.toLocaleString('en-US').padStart(12)}  ${r.dtype}`);
    lines.push(
      `${rows.length} prunable layers in ${blocks} blocks, ${params.toLocaleString('en-US')} parameters ` +
        `(${(100 * totals.fraction).toFixed(1)}% of the model's ${modelParams.toLocaleString('en-US')})`,
    );
    if (rows.length === 0) lines.push('no prunable layers found (MatMul/Gemm with a 2-D float initializer inside decoder blocks)');
    process.stdout.write(lines.join('\n') + '\n');
  },
};
