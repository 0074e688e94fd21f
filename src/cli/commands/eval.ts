/**
 * `symprune eval`: perplexity of a model on a token stream, in the Wanda/Pruner-Zero
 * convention (non-overlapping windows of seqlen tokens, mean NLL over the seqlen-1
 * predicted tokens of each window, exp).
 */
import type { CommandModule } from 'yargs';
import { InputError } from '../../errors.ts';
import { loadTokens } from '../../data/dataset.ts';
import { PerplexityEvaluator } from '../../eval/perplexity.ts';
import { loadModelGraph, resolveModel } from '../../model/load.ts';
import { progress } from '../progress.ts';

interface Args {
  model?: string;
  data: string;
  tokenizer?: string;
  seqlen: number;
  maxTokens?: number;
  batchSize?: number;
  threads?: number;
  json?: boolean;
}

export const DEFAULT_EVAL_DATA = 'brown:test';

export const evalCommand: CommandModule<object, Args> = {
  command: 'eval',
  describe: 'perplexity of a model (non-overlapping windows, exp of the mean next-token NLL)',
  builder: (y) =>
    y
      .option('model', { type: 'string', describe: 'a Hugging Face folder (config.json + safetensors), an ONNX file, or a folder holding one (default: the bundled model)' })
      .option('data', { type: 'string', default: DEFAULT_EVAL_DATA, describe: 'brown:train|calib|search|test, FILE.txt, FILE.npy or FILE.bin (uint16 ids)' })
      .option('tokenizer', { type: 'string', describe: 'tokenizer.json for text data (default: the one beside the model)' })
      .option('seqlen', { type: 'number', default: 128, describe: 'tokens per window' })
      .option('max-tokens', { type: 'number', describe: 'use only the first N tokens of the data' })
      .option('batch-size', { type: 'number', describe: 'windows per onnxruntime run (default: by logits size, at most 16)' })
      .option('threads', { type: 'number', describe: 'onnxruntime threads (default: all cores)' })
      .option('json', { type: 'boolean', describe: 'print one JSON object' }) as never,
  handler: async (a) => {
    if (!Number.isInteger(a.seqlen) || a.seqlen < 2) throw new InputError(`--seqlen ${a.seqlen}: must be an integer of at least 2`);
    if (a.maxTokens !== undefined && (!Number.isInteger(a.maxTokens) || a.maxTokens < 1)) throw new InputError(`--max-tokens ${a.maxTokens}: must be a positive integer`);
    if (a.batchSize !== undefined && (!Number.isInteger(a.batchSize) || a.batchSize < 1)) throw new InputError(`--batch-size ${a.batchSize}: must be a positive integer`);
    const described = resolveModel(a.model, a.tokenizer);
    const { modelPath, tokenizerPath } = described;
    const model = await loadModelGraph(described);
    const evaluator = await PerplexityEvaluator.create(model, { threads: a.threads });
    const tokens = await loadTokens(a.data, { tokenizerPath, vocabSize: evaluator.vocabSize });
    const windows = Math.floor(Math.min(tokens.length, a.maxTokens ?? Infinity) / a.seqlen);
    const bar = progress('eval windows', windows);
    let r;
    try {
      r = await evaluator.evaluate(tokens, { seqlen: a.seqlen, maxTokens: a.maxTokens, batchSize: a.batchSize, onProgress: (d) => bar.update(d) });
    } catch (e) {
      if (e instanceof InputError) throw new InputError(`--data ${a.data}: ${e.message}`);
      throw e;
    } finally {
      bar.done();
      await evaluator.release();
    }
    if (a.json) {
      process.stdout.write(JSON.stringify({ ppl: r.ppl, nll: r.nll, tokens: r.tokens, windows: r.windows, seqlen: r.seqlen, seconds: r.seconds, model: modelPath, data: a.data }) + '\n');
    } else {
      process.stdout.write(`perplexity ${r.ppl.toFixed(3)} on ${a.data} (${r.tokens} predicted tokens in ${r.windows} windows of ${r.seqlen}; ${r.seconds.toFixed(1)}s, ${(r.windows * r.seqlen / r.seconds).toFixed(0)} tokens/s)\n`);
    }
  },
};
