/**
 * One entry point from a data spec on the command line to token ids:
 *   brown:train | brown:calib | brown:search | brown:test   (needs a tokenizer)
 *   FILE.txt                                                (needs a tokenizer)
 *   FILE.npy | FILE.bin                                     (ids as stored)
 * Text is encoded whole (no BOS/EOS added); Brown splits are documents joined by a blank
 * line. Tokenized Brown splits are kept in memory per tokenizer file for the process.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { InputError } from '../errors.ts';
import { isSplitName, splitText, SPLITS } from './splits.ts';
import { readTokenFile } from './token-files.ts';
import { loadTokenizer } from './tokenizer.ts';

export interface LoadTokensOptions {
  /** tokenizer.json; required for brown:<split> and .txt specs. */
  tokenizerPath?: string;
  /** When given, every id must be in [0, vocabSize). */
  vocabSize?: number;
}

const brownCache = new Map<string, Int32Array>();

function needTokenizer(spec: string, tokenizerPath: string | undefined): string {
  if (!tokenizerPath) throw new InputError(`data '${spec}' is text and needs a tokenizer (pass --tokenizer tokenizer.json, or a model folder that holds one)`);
  return tokenizerPath;
}

function tokenizerKey(path: string): string {
  const abs = resolve(path);
  const mtime = existsSync(abs) ? statSync(abs).mtimeMs : 0;
  return `${abs}\0${mtime}`;
}

/** Token ids for a data spec (see the file comment); InputError for anything unusable. */
export async function loadTokens(spec: string, opts: LoadTokensOptions = {}): Promise<Int32Array> {
  let ids: Int32Array;
  if (spec.startsWith('brown:')) {
    const split = spec.slice('brown:'.length);
    if (!isSplitName(split)) throw new InputError(`unknown Brown split in '${spec}' (use ${SPLITS.map((s) => `brown:${s}`).join(', ')})`);
    const tokPath = needTokenizer(spec, opts.tokenizerPath);
    const key = `${tokenizerKey(tokPath)}\0${split}`;
    let cached = brownCache.get(key);
    if (!cached) {
      const tok = loadTokenizer(tokPath);
      cached = Int32Array.from(tok.encode(splitText(split)));
      brownCache.set(key, cached);
    }
    ids = cached.slice(); // callers may write into their copy
  } else {
    const lower = spec.toLowerCase();
    const isFile = (): void => {
      if (!existsSync(spec)) throw new InputError(`data file not found: ${spec}`);
      if (!statSync(spec).isFile()) throw new InputError(`data path is not a file: ${spec}`);
    };
    if (lower.endsWith('.txt')) {
      const tokPath = needTokenizer(spec, opts.tokenizerPath);
      isFile();
      const tok = loadTokenizer(tokPath);
      ids = Int32Array.from(tok.encode(readFileSync(spec, 'utf8')));
    } else if (lower.endsWith('.npy') || lower.endsWith('.bin')) {
      isFile();
      ids = readTokenFile(spec);
    } else {
      throw new InputError(`unknown data '${spec}' (use brown:train|calib|search|test, FILE.txt, FILE.npy or FILE.bin)`);
    }
  }
  if (ids.length === 0) throw new InputError(`data '${spec}' holds no tokens`);
  if (opts.vocabSize !== undefined) checkVocab(ids, opts.vocabSize, spec);
  return ids;
}

/** Throw an InputError naming the first id outside [0, vocabSize) and its position. */
export function checkVocab(ids: Int32Array, vocabSize: number, name: string): void {
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (id < 0 || id >= vocabSize) {
      throw new InputError(`data '${name}': token id ${id} at position ${i} is outside the model's vocabulary (size ${vocabSize})`);
    }
  }
}

/**
 * Raw text of a text source (`brown:<split>` or a `.txt` file), e.g. to fit a tokenizer on.
 * `what` names the input in errors (a flag or a config field).
 */
export function loadText(spec: string, what: string): string {
  if (spec.startsWith('brown:')) {
    const split = spec.slice('brown:'.length);
    if (!isSplitName(split)) throw new InputError(`${what} ${spec}: unknown Brown split (use ${SPLITS.map((s) => `brown:${s}`).join(', ')})`);
    return splitText(split);
  }
  if (!spec.toLowerCase().endsWith('.txt')) throw new InputError(`${what} ${spec}: text is needed here, brown:<split> or a .txt file (token ids cannot train a tokenizer)`);
  if (!existsSync(spec) || statSync(spec).isDirectory()) throw new InputError(`${what} ${spec}: file not found`);
  const text = readFileSync(spec, 'utf8');
  if (text.length === 0) throw new InputError(`${what} ${spec}: the file is empty`);
  return text;
}
