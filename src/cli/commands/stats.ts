/**
 * `symprune stats`: G and X of every prunable layer on the dense model, written as a
 * safetensors file that `prune --stats` and the search read back (and that tools on
 * PyTorch can produce or consume).
 */
import fs from 'node:fs';
import path from 'node:path';
import { applyDeviceFlags, deviceFlags, type DeviceArgs } from '../device-flags.ts';
import type { CommandModule } from 'yargs';
import { InputError } from '../../errors.ts';
import { resolveModel } from '../../model/load.ts';
import { openModelSource } from '../../model/source.ts';
import { progress } from '../progress.ts';
import { booleanFlag, checkSeqlen, dataFlag, inputFileFlag, intFlag, makeDirs, modelFlag, outputFileFlag, threadsFlag } from '../validate.ts';
import { graphMaxPositions } from '../../onnx/max-positions.ts';
import { CALIBRATION_SEED, DEFAULT_CALIBRATION_DATA, calibrationShape, DEFAULT_NSAMPLES, DEFAULT_SEQLEN, checkWindowSpec, loadCalibrationWindows, modelVocabSize } from '../../prune/calibration-windows.ts';
import { computeGradients, denseX, gradientPlan, prunableLayers } from '../../prune/prune-model.ts';
import { writeStatsFile } from '../../prune/stats-file.ts';

interface Args extends DeviceArgs {
  model?: string;
  tokenizer?: string;
  data?: string;
  nsamples: number;
  seqlen: number;
  out: string;
  threads?: number;
  json?: boolean;
}

export const statsCommand: CommandModule<object, Args> = {
  command: 'stats',
  describe: 'write G and X of every prunable layer (dense model) to a safetensors file',
  builder: (y) =>
    deviceFlags(y)
      .option('model', modelFlag())
      .option('tokenizer', inputFileFlag('tokenizer', { describe: 'tokenizer.json for text data (default: the one beside the model)' }))
      .option('data', dataFlag('data', { describe: `calibration data (default ${DEFAULT_CALIBRATION_DATA})` }))
      .option('nsamples', intFlag('nsamples', { min: 1, describe: `calibration windows (default ${DEFAULT_NSAMPLES}; with a 2-D .npy of samples: its rows)` }))
      .option('seqlen', intFlag('seqlen', { min: 2, describe: `tokens per window (default ${DEFAULT_SEQLEN}; with a 2-D .npy of samples: its row length)` }))
      .option('out', outputFileFlag('out', { demandOption: true, ext: /\.safetensors$/i, extName: 'a .safetensors file name', describe: 'output FILE.safetensors' }))
      .option('threads', threadsFlag())
      .option('json', booleanFlag('print a JSON summary')) as never,
  handler: async (a) => {
    const t0 = performance.now();
    checkWindowSpec({ nsamples: a.nsamples, seqlen: a.seqlen });
    // A 2-D .npy of samples [n, seqlen] fixes both (used row by row); otherwise the defaults.
    ({ nsamples: a.nsamples, seqlen: a.seqlen } = calibrationShape(a));
    const { maxMemory } = applyDeviceFlags(a);
    const described = resolveModel(a.model, a.tokenizer);
    const { modelPath, tokenizerPath } = described;
    const out = path.resolve(a.out);
    if (out === path.resolve(modelPath)) throw new InputError(`--out ${a.out}: is the input model`);
    const source = await openModelSource(described);
    checkSeqlen('--seqlen', a.seqlen, graphMaxPositions(source.model));
    const layers = prunableLayers(source.model);
    // G by the whole model's gradient graph when it fits the budget, block by block otherwise.
    const gradients = gradientPlan(source, layers, a.nsamples, a.seqlen, maxMemory);
    const windows = await loadCalibrationWindows({ data: a.data, nsamples: a.nsamples, seqlen: a.seqlen, tokenizerPath, vocabSize: modelVocabSize(source.model), seed: CALIBRATION_SEED });
    const tg = performance.now();
    let seconds = { gradients: 0, X: 0 };
    const gbar = progress('G', windows.length);
    const model = gradients === 'whole' ? (await source.loadAll()).model : null;
    const G = await computeGradients(source, model, layers, windows, gradients, { threads: a.threads, onBatch: (d, n) => gbar.update((d / n) * windows.length) });
    try {
      gbar.done();
      const gradSeconds = (performance.now() - tg) / 1000;
      const tx = performance.now();
      const bar = progress('X', windows.length);
      const X = await denseX(model ?? source, layers, windows, { threads: a.threads, onBatch: (d, n) => bar.update((d / n) * windows.length) });
      bar.done();
      const xSeconds = (performance.now() - tx) / 1000;
      makeDirs(path.dirname(out));
      writeStatsFile(out, layers, (l) => ({ G: G.get(l.name) ?? null, X: X.get(l.name) ?? null }), {
        model: modelPath,
        data: a.data ?? DEFAULT_CALIBRATION_DATA,
        nsamples: String(windows.length),
        seqlen: String(a.seqlen),
        seed: String(CALIBRATION_SEED),
        G: '100 * sqrt(sum_n g_n^2), per-sequence gradient of mean next-token cross-entropy, dense model',
        X: 'mean over sequences of sum over tokens of x_j^2 (layer input)',
      });
      seconds = { gradients: gradSeconds, X: xSeconds };
    } finally {
      G.close();
      await source.close();
    }
    const summary = {
      out,
      layers: layers.length,
      nsamples: windows.length,
      seqlen: a.seqlen,
      bytes: fs.statSync(out).size,
      gradients,
      seconds: { ...seconds, total: (performance.now() - t0) / 1000 },
    };
    if (a.json) process.stdout.write(JSON.stringify(summary) + '\n');
    else process.stdout.write(`wrote G and X of ${layers.length} layers (${windows.length} x ${a.seqlen} tokens) to ${out} in ${summary.seconds.total.toFixed(1)}s (G ${seconds.gradients.toFixed(1)}s${gradients === 'streamed' ? ' block by block' : ''}, X ${seconds.X.toFixed(1)}s)\n`);
  },
};
