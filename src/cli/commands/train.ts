/** `symprune train`: train a LLaMA from a config file (how the bundled model is made). */
import type { CommandModule } from 'yargs';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../../errors.ts';
import { configHash, loadTrainConfig, type TrainConfig } from '../../train/config.ts';
import { runTraining } from '../../train/run.ts';
import { progress, fmtSecs } from '../progress.ts';
import { booleanFlag, inputFileFlag, intFlag, outputDirFlag, threadsFlag } from '../validate.ts';

/**
 * Training writes model.onnx, tokenizer.json and card.json into OUT: a folder that already
 * holds a model of another config (its card's config hash differs, or it has no card) is
 * refused, since its tokenizer would be replaced long before a new model is written.
 */
function checkTrainOut(cfg: TrainConfig, out: string): void {
  const held = ['model.onnx', 'tokenizer.json', 'card.json'].filter((f) => existsSync(join(out, f)));
  if (held.length === 0) return;
  let hash: unknown = null;
  try {
    hash = (JSON.parse(readFileSync(join(out, 'card.json'), 'utf8')) as { configHash?: unknown }).configHash;
  } catch {
    hash = null; // no card, or not ours: another model
  }
  if (hash === configHash(cfg)) return; // the same config: retraining makes the same model
  throw new InputError(`--out ${out}: holds ${held.join(', ')} of another model; training would replace them (use a new folder, or --force to replace)`);
}

interface Args {
  config: string;
  out: string;
  resume?: boolean;
  force?: boolean;
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
      .option('config', inputFileFlag('config', { demandOption: true, describe: 'training config (JSON), e.g. models/brown-llama.train.json' }))
      .option('out', outputDirFlag('out', { demandOption: true, describe: 'output folder (model.onnx, tokenizer.json, card.json, checkpoint/)' }))
      .option('resume', booleanFlag('continue from the checkpoint in OUT/checkpoint'))
      .option('force', booleanFlag('replace a model of another config already in OUT'))
      .option('threads', threadsFlag('intra-op threads (default: all cores)'))
      .option('stop-after', intFlag('stop-after', { min: 0, describe: 'stop after this many steps, keeping a checkpoint to resume from' }))
      .option('keep-checkpoint', booleanFlag('keep OUT/checkpoint after a finished run (removed by default)'))
      .option('json', booleanFlag('print the card as one JSON line at the end')) as never,
  handler: async (a) => {
    const cfg = loadTrainConfig(a.config);
    if (!a.resume && !a.force) checkTrainOut(cfg, a.out);
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
