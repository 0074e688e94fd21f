/** `symprune train`: train a LLaMA from a config file (how the bundled model is made). */
import type { CommandModule } from 'yargs';
import { loadTrainConfig } from '../../train/config.ts';
import { runTraining } from '../../train/run.ts';
import { progress, fmtSecs } from '../progress.ts';

interface Args {
  config: string;
  out: string;
  resume?: boolean;
  threads?: number;
  'stop-after'?: number;
  'keep-checkpoint'?: boolean;
  json?: boolean;
}

export const trainCommand: CommandModule<object, Args> = {
  command: 'train',
  describe: 'train a LLaMA on Brown (tokenizer, AdamW, cosine schedule, checkpoints); writes model.onnx, tokenizer.json, card.json',
  builder: (y) =>
    y
      .option('config', { type: 'string', demandOption: true, describe: 'training config (JSON), e.g. models/brown-llama.train.json' })
      .option('out', { type: 'string', demandOption: true, describe: 'output folder (model.onnx, tokenizer.json, card.json, checkpoint/)' })
      .option('resume', { type: 'boolean', describe: 'continue from the checkpoint in OUT/checkpoint' })
      .option('threads', { type: 'number', describe: 'intra-op threads (default: all cores)' })
      .option('stop-after', { type: 'number', describe: 'stop after this many steps, keeping a checkpoint to resume from' })
      .option('keep-checkpoint', { type: 'boolean', describe: 'keep OUT/checkpoint after a finished run (removed by default)' })
      .option('json', { type: 'boolean', describe: 'print the card as one JSON line at the end' }) as never,
  handler: async (a) => {
    const cfg = loadTrainConfig(a.config);
    const bar = progress('train', cfg.steps);
    let lastEval = '';
    const log = (line: string) => process.stderr.write(`${line}\n`);
    const card = await runTraining(cfg, a.out, {
      resume: a.resume,
      threads: a.threads,
      stopAfter: a['stop-after'],
      keepCheckpoint: a['keep-checkpoint'],
      log,
      onStep: (s) => bar.update(s.step, `loss ${s.loss.toFixed(3)} lr ${s.lr.toExponential(2)} |g| ${s.gradNorm.toFixed(2)} ${Math.round(s.tokensSeen / s.elapsedSeconds)} tok/s${lastEval}`),
      onEval: (e) => {
        lastEval = ` eval ppl ${e.ppl.toFixed(1)}`;
        if (!process.stderr.isTTY) log(`step ${e.step}: ${cfg.data.eval} perplexity ${e.ppl.toFixed(2)}`);
      },
    });
    bar.done();
    if (!card) {
      process.stdout.write(a.json ? JSON.stringify({ stopped: true, out: a.out }) + '\n' : `stopped; resume with --resume (checkpoint in ${a.out}/checkpoint)\n`);
      return;
    }
    process.stdout.write(a.json ? JSON.stringify(card) + '\n'
      : `wrote ${a.out}/model.onnx: ${card.steps} steps, ${card.tokensSeen} tokens in ${fmtSecs(card.wallSeconds)}; ${card.test.data} perplexity ${card.test.ppl.toFixed(2)} (unigram ${card.unigram.ppl.toFixed(2)}, ratio ${card.pplRatio.toFixed(3)})\n`);
  },
};
