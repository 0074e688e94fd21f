/**
 * A ranked metric of a run in the formats users take away: symprune JSON (the metric
 * with its provenance), Pruner-Zero's tree JSON, infix, and LaTeX. The first three are
 * read back by `symprune prune --metric FILE`.
 */
import { parseMetric } from '../search-space/parse.ts';
import { toInfix, toLatex, toPrunerZeroJson, toTreeJson } from '../search-space/print.ts';
import type { DB } from './schema.ts';
import { runSettingLabels } from './setting.ts';
import { baselines, individualAtRank, pickRun, type RankedIndividual } from './queries.ts';
import { extname } from 'node:path';
import { paretoFront, type ParetoPoint } from './pareto.ts';
import { paretoScene } from './report.ts';
import { sceneSvg } from './plot-svg.ts';
import { scenePng } from './plot-png.ts';
import type { RunRow } from './store.ts';

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
            // An allocation search's individual: what `prune --allocation FILE` (and `--metric FILE`) read.
            ...(run.config.evolveAllocation ? { kind: 'allocation', ...(run.config.evolveAllocation as object) } : {}),
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
              // A run over several settings: its fitness (ppl above) is the geometric mean over these.
              ...(Array.isArray(run.config.settings) ? { settings: runSettingLabels(run.config) } : {}),
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

/** `export --pareto`: the run's Pareto front as JSON, CSV, or a plot (SVG/PNG), by the file's extension. */
export function exportPareto(db: DB, path: string, opts: { run?: number; out: string }): { run: number; points: ParetoPoint[]; data: string | Buffer } {
  const run = pickRun(db, path, opts.run);
  const points = paretoFront(db, run.id);
  const ext = extname(opts.out).toLowerCase();
  let data: string | Buffer;
  if (ext === '.csv') {
    const q = (s: string) => `"${s.replace(/"/g, '""')}"`;
    data = ['size,fitness,fidelity,short_ppl,full_ppl,id,depth,infix', ...points.map((p) => [p.size, p.fitness, p.fidelity ?? '', p.shortPpl ?? '', p.fullPpl ?? '', p.id, p.depth, q(p.infix)].join(','))].join('\n') + '\n';
  } else if (ext === '.svg' || ext === '.png') {
    const scene = paretoScene({ run: { id: run.id } as RunRow, pareto: points, baselines: baselines(db, run.id) });
    data = ext === '.svg' ? sceneSvg(scene) : scenePng(scene);
  } else {
    data = JSON.stringify({ db: path, run: run.id, fitnessData: run.config.fitnessData ?? null, front: points }, null, 2) + '\n';
  }
  return { run: run.id, points, data };
}
