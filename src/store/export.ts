/**
 * A ranked metric of a run in the formats users take away: symprune JSON (the metric
 * with its provenance), Pruner-Zero's tree JSON, infix, and LaTeX. The first three are
 * read back by `symprune prune --metric FILE`.
 */
import { parseMetric } from '../search-space/parse.ts';
import { toInfix, toLatex, toPrunerZeroJson, toTreeJson } from '../search-space/print.ts';
import type { DB } from './schema.ts';
import { individualAtRank, pickRun, type RankedIndividual } from './queries.ts';

export const EXPORT_FORMATS = ['json', 'pruner-zero', 'infix', 'latex'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

export interface Exported {
  run: number;
  individual: RankedIndividual;
  text: string;
}

export function exportMetric(db: DB, path: string, opts: { rank: number; run?: number; format: ExportFormat }): Exported {
  const run = pickRun(db, path, opts.run);
  const ind = individualAtRank(db, path, run.id, opts.rank);
  const tree = parseMetric(JSON.stringify(ind.tree));
  let text: string;
  switch (opts.format) {
    case 'json':
      text =
        JSON.stringify(
          {
            infix: toInfix(tree),
            tree: toTreeJson(tree),
            latex: toLatex(tree),
            fitness: {
              split: run.config.fitnessData ?? null,
              ppl: ind.fullPpl ?? ind.fitness,
              shortPpl: ind.shortPpl,
              budget: ind.fullPpl !== null ? 'full' : 'short',
            },
            search: {
              db: path,
              run: run.id,
              rank: opts.rank,
              individual: ind.id,
              step: ind.step,
              seed: run.seed,
              sparsity: run.config.sparsity ?? null,
              pattern: run.config.pattern ?? null,
              model: run.modelPath,
              modelSha256: run.modelSha256,
            },
          },
          null,
          2,
        ) + '\n';
      break;
    case 'pruner-zero':
      text = JSON.stringify(toPrunerZeroJson(tree), null, 4) + '\n';
      break;
    case 'infix':
      text = toInfix(tree) + '\n';
      break;
    case 'latex':
      text = `% symprune run ${run.id}, rank ${opts.rank}: ${toInfix(tree)}\n$${toLatex(tree)}$\n`;
      break;
  }
  return { run: run.id, individual: ind, text };
}
