/**
 * `symprune eval`: perplexity of a model on a token stream, in the Wanda/Pruner-Zero
 * convention (non-overlapping windows of seqlen tokens, mean NLL over the seqlen-1
 * predicted tokens of each window, exp).
 */
import type { CommandModule } from 'yargs';
import { InputError } from '../../errors.ts';
import { loadTokens } from '../../data/dataset.ts';
import { modelPerplexity, sourceVocabSize } from '../../eval/perplexity-stream.ts';
import { resolveModel } from '../../model/load.ts';
import { openModelSource } from '../../model/source.ts';
import { applyDeviceFlags, deviceFlags, type DeviceArgs } from '../device-flags.ts';
import { progress, type Progress } from '../progress.ts';
import { booleanFlag, checkSeqlen, dataFlag, inputFileFlag, intFlag, modelFlag, threadsFlag } from '../validate.ts';
import { graphMaxPositions } from '../../onnx/max-positions.ts';
import { formatTasks, taskFlag, taskTokenizer, tasksFromArgs } from '../zero-shot-flags.ts';
import { scoreTasks } from '../../eval/zero-shot.ts';

interface Args extends DeviceArgs {
  model?: string;
  data: string;
  tokenizer?: string;
  seqlen: number;
  maxTokens?: number;
  batchSize?: number;
  threads?: number;
  json?: boolean;
  task?: string[];
}

export const DEFAULT_EVAL_DATA = 'brown:test';

export const evalCommand: CommandModule<object, Args> = {
  command: 'eval',
  describe: 'perplexity of a model (non-overlapping windows, exp of the mean next-token NLL)',
  builder: (y) =>
    deviceFlags(taskFlag(y, false))
      .option('model', modelFlag())
      .option('data', dataFlag('data', { default: DEFAULT_EVAL_DATA, describe: 'brown:train|calib|search|test, FILE.txt, FILE.npy or FILE.bin (uint16 ids)' }))
      .option('tokenizer', inputFileFlag('tokenizer', { describe: 'tokenizer.json for text data (default: the one beside the model)' }))
      .option('seqlen', intFlag('seqlen', { min: 2, default: 128, describe: 'tokens per window' }))
      .option('max-tokens', intFlag('max-tokens', { min: 2, describe: 'use only the first N tokens of the data' }))
      .option('batch-size', intFlag('batch-size', { min: 1, max: 4096, describe: 'windows per onnxruntime run (default: by logits size, at most 16)' }))
      .option('threads', threadsFlag())
      .option('json', booleanFlag('print one JSON object')) as never,
  handler: async (a) => {
    if (a.maxTokens !== undefined && a.maxTokens < a.seqlen) throw new InputError(`--max-tokens ${a.maxTokens}: fewer than one window of --seqlen ${a.seqlen}`);
    const { maxMemory } = applyDeviceFlags(a);
    const described = resolveModel(a.model, a.tokenizer);
    const { modelPath, tokenizerPath } = described;
    const tasks = tasksFromArgs(a.task, false);
    const tok = taskTokenizer(tasks, tokenizerPath);
    const source = await openModelSource(described);
    let r;
    try {
      checkSeqlen('--seqlen', a.seqlen, graphMaxPositions(source.model));
      const tokens = await loadTokens(a.data, { tokenizerPath, vocabSize: sourceVocabSize(source) || undefined });
      let bar: Progress | null = null;
      try {
        r = await modelPerplexity(source, tokens, {
          seqlen: a.seqlen,
          maxTokens: a.maxTokens,
          batchSize: a.batchSize,
          threads: a.threads,
          maxMemory,
          loadAll: async () => (await source.loadAll()).model,
          onProgress: (d, n) => (bar ??= progress('eval', n)).update(d),
        });
      } catch (e) {
        if (e instanceof InputError) throw new InputError(`--data ${a.data}: ${e.message}`);
        throw e;
      } finally {
        (bar as Progress | null)?.done();
      }
    } catch (e) {
      await source.close();
      throw e;
    }
    const taskBar = progress('zero-shot items', tasks.reduce((n, t) => n + t.items.length, 0));
    let before = 0;
    // Zero-shot scoring runs the whole model (it needs every window's logits).
    const scored = tok ? await scoreTasks((await source.loadAll()).model, tok, tasks, { threads: a.threads, onItem: (_t, d, n) => (taskBar.update(before + d), d === n && (before += n)) }) : null;
    taskBar.done();
    await source.close();
    if (a.json) {
      process.stdout.write(JSON.stringify({ ppl: r.ppl, nll: r.nll, tokens: r.tokens, windows: r.windows, seqlen: r.seqlen, seconds: r.seconds, model: modelPath, streamed: r.streamed, data: a.data, ...(scored ? { tasks: scored } : {}) }) + '\n');
    } else {
      if (scored) process.stdout.write(formatTasks(scored) + '\n');
      process.stdout.write(`perplexity ${r.ppl.toFixed(3)} on ${a.data} (${r.tokens} predicted tokens in ${r.windows} windows of ${r.seqlen}; ${r.seconds.toFixed(1)}s, ${(r.windows * r.seqlen / r.seconds).toFixed(0)} tokens/s${r.streamed ? ', block by block' : ''})\n`);
    }
  },
};
