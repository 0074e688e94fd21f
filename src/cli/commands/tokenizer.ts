/**
 * `symprune tokenizer train`: fit a byte-level BPE tokenizer (GPT-2 style) on Brown's
 * train split or a text file and write it as a Hugging Face tokenizer.json.
 */
import { dirname, resolve } from 'node:path';
import type { CommandModule } from 'yargs';
import { encodeWithMerges, saveTokenizerJson, trainBpe } from '../../data/bpe-train.ts';
import { loadText } from '../../data/dataset.ts';
import { progress } from '../progress.ts';
import { booleanFlag, dataFlag, intFlag, makeDirs, outputFileFlag } from '../validate.ts';

interface TrainArgs {
  vocab: number;
  out: string;
  data: string;
  json?: boolean;
}

const trainSub: CommandModule<object, TrainArgs> = {
  command: 'train',
  describe: 'train a byte-level BPE tokenizer and save it as tokenizer.json',
  builder: (y) =>
    y
      .option('vocab', intFlag('vocab', { min: 257, max: 1_000_000, default: 4096, describe: 'vocabulary size: 256 bytes + merges + <|endoftext|> (last id)' }))
      .option('out', outputFileFlag('out', { default: 'tokenizer.json', describe: 'where to write the tokenizer.json' }))
      .option('data', dataFlag('data', { default: 'brown:train', describe: 'training text: brown:<split> or FILE.txt' }))
      .option('json', booleanFlag('print one JSON object')) as never,
  handler: (a) => {
    const text = loadText(a.data, '--data');
    const t0 = performance.now();
    const bar = progress('merges', a.vocab);
    let model;
    try {
      model = trainBpe(text, { vocabSize: a.vocab, onProgress: (d) => bar.update(d) });
    } finally {
      bar.done();
    }
    const seconds = (performance.now() - t0) / 1000;
    makeDirs(dirname(resolve(a.out)));
    saveTokenizerJson(model, a.out);
    const tokens = encodeWithMerges(model, text).length;
    const r = {
      out: a.out,
      data: a.data,
      vocabSize: model.vocab.length,
      merges: model.merges.length,
      endOfTextId: model.vocab.length - 1,
      chars: text.length,
      tokens,
      charsPerToken: text.length / tokens,
      seconds,
    };
    if (a.json) process.stdout.write(JSON.stringify(r) + '\n');
    else {
      const short = r.vocabSize < a.vocab ? ` (asked ${a.vocab}; the text has no more pairs seen twice)` : '';
      process.stdout.write(
        `wrote ${r.out}: ${r.vocabSize} tokens${short}, ${r.merges} merges, <|endoftext|> = ${r.endOfTextId}; ` +
          `${r.data} is ${r.tokens} tokens (${r.charsPerToken.toFixed(2)} chars/token); trained in ${seconds.toFixed(1)}s\n`,
      );
    }
  },
};

export const tokenizerCommand: CommandModule = {
  command: 'tokenizer',
  describe: 'tokenizer tools (train)',
  builder: (y) => y.command(trainSub).demandCommand(1, 'name an action: train'),
  handler: () => {},
};
