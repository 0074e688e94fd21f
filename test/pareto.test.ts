import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDatabase } from '../src/store/schema.ts';
import { RunStore } from '../src/store/store.ts';
import { paretoFront } from '../src/store/pareto.ts';
import { exportPareto } from '../src/store/export.ts';
import { buildReport, formatReport } from '../src/store/report.ts';

test('Pareto front: non-dominated, and every individual is dominated by (or on) it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'symprune-pareto-'));
  try {
    const path = join(dir, 'run.sqlite');
    const db = openDatabase(path);
    const s = RunStore.create(db, { config: { fitnessData: 'brown:search' }, seed: 1, modelPath: 'm.onnx', modelSha256: 'x', dataHashes: {}, versions: {} });
    let r = 7;
    const rand = () => ((r = (r * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const all: { id: number; size: number; fitness: number }[] = [];
    for (let id = 0; id < 80; id++) {
      const size = 1 + Math.floor(rand() * 12);
      // Bigger trees tend to be better, with noise; a few ties on purpose.
      const fitness = id === 41 ? all[3]!.fitness : Math.round((40 - size + rand() * 12) * 4) / 4;
      const sz = id === 41 ? all[3]!.size : size;
      s.addIndividual({ id, infix: `t${id}`, tree: { data: `t${id}` }, hash: `h${id}`, features: { size: sz, depth: 1, terminals: { W: 1, G: 0, X: 0 }, ops: {} }, parents: [], origin: 'init', step: id });
      s.addEvaluation({ individual: id, fidelity: 'short', tokens: 64, ppl: fitness, seconds: 0.1, worker: 0, status: 'ok' });
      s.setFitness(id, fitness, 'short');
      all.push({ id, size: sz, fitness });
    }
    // Failed and invalid individuals never enter the front, however small.
    s.addIndividual({ id: 80, infix: 'G', tree: { data: 'G' }, hash: 'h80', features: { size: 1, depth: 1, terminals: { W: 0, G: 1, X: 0 }, ops: {} }, parents: [], origin: 'init', step: 0 });
    s.setFitness(80, Infinity, null);
    s.addIndividual({ id: 81, infix: 'X', tree: { data: 'X' }, hash: 'h81', features: { size: 1, depth: 1, terminals: { W: 0, G: 0, X: 1 }, ops: {} }, parents: [], origin: 'init', step: 0, invalid: 'shape' });

    const front = paretoFront(db, 1);
    assert.ok(front.length >= 3, `front of ${front.length}`);
    const dominates = (a: { size: number; fitness: number }, b: { size: number; fitness: number }) =>
      a.size <= b.size && a.fitness <= b.fitness && (a.size < b.size || a.fitness < b.fitness);
    for (const p of front) assert.ok(!all.some((q) => dominates(q, p)), `front point ${p.id} is dominated`);
    for (const q of all) assert.ok(front.some((p) => p.id === q.id || dominates(p, q) || (p.size === q.size && p.fitness === q.fitness)), `${q.id} neither on nor dominated by the front`);
    // Sizes rise and fitness falls strictly along the front; the smallest valid tree's best is first.
    for (let i = 1; i < front.length; i++) assert.ok(front[i]!.size > front[i - 1]!.size && front[i]!.fitness < front[i - 1]!.fitness);
    const minSize = Math.min(...all.map((q) => q.size));
    assert.equal(front[0]!.size, minSize);
    assert.equal(front[0]!.fitness, Math.min(...all.filter((q) => q.size === minSize).map((q) => q.fitness)));
    assert.ok(!front.some((p) => p.id >= 80));
    // Ties at a size go to the earliest id.
    for (const p of front) assert.equal(p.id, Math.min(...all.filter((q) => q.size === p.size && q.fitness === p.fitness).map((q) => q.id)));

    const rep = buildReport(db, path);
    assert.deepEqual(rep.pareto, front);
    assert.match(formatReport(rep), /Pareto front/);
    const csv = exportPareto(db, path, { out: 'f.csv' }).data as string;
    assert.equal(csv.trim().split('\n').length, front.length + 1);
    assert.match(exportPareto(db, path, { out: 'f.svg' }).data as string, /^<svg[\s\S]*Pareto front/);
    assert.equal((exportPareto(db, path, { out: 'f.png' }).data as Buffer).subarray(1, 4).toString(), 'PNG');
    assert.deepEqual(JSON.parse(exportPareto(db, path, { out: 'f.json' }).data as string).front, front);
    db.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
