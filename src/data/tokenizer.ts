/**
 * Text <-> token ids through a Hugging Face `tokenizer.json`, loaded by the
 * @huggingface/tokenizers library (pure JS, the one transformers.js uses), so tokenizers
 * of real models and the one `symprune tokenizer train` writes behave the same way.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { InputError } from '../errors.ts';

export interface Tokenizer {
  /** Ids of a text; no special tokens (BOS/EOS) are added. */
  encode(text: string): number[];
  /** Text of ids, special tokens included as their text, no space clean-up. */
  decode(ids: number[]): string;
  /** One more than the largest id (vocabulary and added tokens). */
  vocabSize: number;
  /** Id of a token string (e.g. `<|endoftext|>`), if the vocabulary has it. */
  idOf(token: string): number | undefined;
}

/** Longest piece handed to the library at once (chars); longer texts are cut (see cutPoints). */
const CHUNK = 1 << 16;

/**
 * Places to cut a long text so that encoding the pieces separately gives the same ids as
 * encoding it whole under the GPT-2 pre-tokenizer pattern: just before the last
 * whitespace character of a whitespace run that ends in "\n" and is followed by a
 * non-space. The pattern never joins that "\n" to anything before or after it, and its
 * matches depend only on text to their right, so both sides pre-tokenize as before.
 */
function splitForEncoding(text: string): string[] {
  if (text.length <= CHUNK) return [text];
  const parts: string[] = [];
  let start = 0;
  while (text.length - start > CHUNK) {
    let cut = -1;
    for (let i = text.lastIndexOf('\n', start + CHUNK); i > start; i = text.lastIndexOf('\n', i - 1)) {
      if (i + 1 < text.length && /\S/u.test(text[i + 1])) {
        cut = i;
        break;
      }
    }
    if (cut < 0) {
      const re = /\n(?=\S)/gu;
      re.lastIndex = start + CHUNK;
      const m = re.exec(text);
      if (!m) break;
      cut = m.index;
    }
    parts.push(text.slice(start, cut));
    start = cut;
  }
  parts.push(text.slice(start));
  return parts;
}

/**
 * Load a tokenizer.json (and a tokenizer_config.json beside it, when present). Throws an
 * InputError naming the file when it is missing or not a tokenizer the library can build.
 */
export function loadTokenizer(path: string): Tokenizer {
  if (!existsSync(path)) throw new InputError(`tokenizer file not found: ${path}`);
  if (statSync(path).isDirectory()) throw new InputError(`tokenizer path is a folder, expected tokenizer.json: ${path}`);
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new InputError(`${path} is not valid JSON (${(e as Error).message.split('\n')[0]})`);
  }
  if (!json || typeof json !== 'object' || !('model' in json)) {
    throw new InputError(`${path} is not a Hugging Face tokenizer.json (no "model" entry)`);
  }
  const j = json as Record<string, unknown>;
  // The library insists on these keys; tokenizer.json files may leave null ones out.
  const full = {
    normalizer: null,
    pre_tokenizer: null,
    post_processor: null,
    decoder: null,
    added_tokens: [],
    ...j,
  };
  let config: Record<string, unknown> = {};
  const configPath = join(dirname(path), 'tokenizer_config.json');
  if (existsSync(configPath)) {
    try {
      config = JSON.parse(readFileSync(configPath, 'utf8'));
    } catch (e) {
      throw new InputError(`${configPath} is not valid JSON (${(e as Error).message.split('\n')[0]})`);
    }
  }
  let tok: HfTokenizer;
  try {
    tok = new HfTokenizer(full, config);
  } catch (e) {
    throw new InputError(`${path}: cannot build a tokenizer from it (${(e as Error).message.split('\n')[0]})`);
  }
  const vocab = tok.get_vocab(true);
  let maxId = -1;
  for (const id of vocab.values()) if (id > maxId) maxId = id;
  if (maxId < 0) throw new InputError(`${path}: the tokenizer has an empty vocabulary`);
  return {
    vocabSize: maxId + 1,
    encode(text: string): number[] {
      const out: number[] = [];
      for (const part of splitForEncoding(text)) {
        const ids = tok.encode(part, { add_special_tokens: false }).ids;
        for (const id of ids) {
          if (id === undefined || id === null) throw new InputError(`${path}: the tokenizer cannot encode some text (no unknown token)`);
          out.push(id);
        }
      }
      return out;
    },
    decode(ids: number[]): string {
      if (ids.length === 0) return '';
      const bad = ids.findIndex((id) => !Number.isInteger(id) || id < 0 || id > maxId);
      if (bad >= 0) throw new InputError(`${path}: cannot decode id ${ids[bad]} at position ${bad} (vocabulary size ${maxId + 1})`);
      return tok.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
    },
    idOf(token: string): number | undefined {
      return tok.token_to_id(token);
    },
  };
}
