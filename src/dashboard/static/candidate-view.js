// One candidate: its tree, where it came from and what came of it, what its evaluations
// cost, and which other trees pruned exactly the same weights.
import { card, fmt, formula, getJson, h, link, panel, route, table } from './dom.js';

/** Pruner-Zero's tree ({data, left, right}) as nested boxes. */
function treeView(t) {
  const node = (n) => {
    if (!n || typeof n !== 'object') return h('li', null, h('span', { class: 'node' }, '?'));
    const kids = [n.left, n.right].filter((k) => k !== undefined && k !== null);
    return h('li', null, h('span', { class: 'node' + (kids.length ? '' : ' leaf') }, String(n.data)), kids.length ? h('ul', null, kids.map(node)) : null);
  };
  return h('ul', { class: 'tree' }, node(t));
}

export function candidateView(db, run, id) {
  const el = h('div');
  const brief = (rows, tid, empty) =>
    table(
      [
        { key: 'id', label: 'id', num: true, cell: (x) => link(['run', db, run, 'c', x.id], `#${x.id}`) },
        { key: 'fitness', label: 'ppl', num: true, cell: (x) => fmt.ppl(x.fitness) + (x.fidelity === 'short' ? '*' : '') },
        { key: 'size', label: 'size', num: true },
        { key: 'step', label: 'step', num: true },
        { key: 'origin', label: 'origin' },
        { key: 'infix', label: 'metric', cell: (x) => h('code', null, x.infix) },
      ],
      rows,
      { id: tid, short: true, empty, onRow: (x) => (location.hash = route(['run', db, run, 'c', x.id])) },
    );

  let shown = '';
  async function refresh() {
    const c = await getJson(`/api/candidate?db=${db}&run=${run}&id=${id}`);
    // A live run commits often; redraw only when this candidate's data changed.
    const text = JSON.stringify(c);
    if (text === shown) return;
    shown = text;
    const i = c.individual;
    const evs = c.evaluations;
    el.replaceChildren(
      h('h1', null, `Individual #${i.id}`, h('span', { class: 'muted', style: 'font-size:14px;font-weight:400' }, `${c.label} · run ${run}`)),
      h('section', { class: 'panel', style: 'margin-bottom:16px' },
        h('div', { class: 'formula-big' }, formula(i.latex, i.infix, true)),
        h('dl', { class: 'kv' },
          h('dt', null, 'infix'), h('dd', null, h('code', { id: 'infix' }, i.infix)),
          h('dt', null, 'canonical'), h('dd', null, h('code', null, String(i.canonical))),
          h('dt', null, 'fingerprint'), h('dd', null, h('code', null, i.fingerprint ?? '–')),
          i.invalid ? [h('dt', null, 'unusable'), h('dd', { class: 'bad' }, String(i.invalid))] : null,
          i.shared_with !== null && i.shared_with !== undefined ? [h('dt', null, 'fitness taken from'), h('dd', null, link(['run', db, run, 'c', i.shared_with], `#${i.shared_with}`))] : null,
        ),
      ),
      h('div', { class: 'cards' },
        card('fitness', fmt.ppl(i.fitness) + (i.fidelity === 'short' ? '*' : ''), i.fidelity ? `${i.fidelity} budget${i.fidelity === 'short' ? ' (estimated)' : ''}` : 'not evaluated'),
        card('rank', c.rank === null ? '–' : String(c.rank), 'by fitness in this run'),
        card('size · depth', `${i.size} · ${i.depth}`, `W ${i.n_W} · G ${i.n_G} · X ${i.n_X}`),
        card('born', `step ${i.step}`, String(i.origin)),
        card('evaluation time', fmt.secs(evs.reduce((a, e) => a + (e.status === 'reused' ? 0 : e.seconds ?? 0), 0)), `${evs.length} evaluation${evs.length === 1 ? '' : 's'}`),
      ),
      h('div', { class: 'grid' },
        panel('Tree', 'as stored (Pruner-Zero layout)', i.tree ? treeView(i.tree) : h('div', { class: 'empty' }, 'tree not readable')),
        h('div', { class: 'stack' },
          panel('Parents', null, brief(c.parents, 'parents', 'none: an initial or seeded tree')),
          c.ancestors.length
            ? panel('Further back', 'grandparents and beyond (generation 2 = grandparent)', table(
                [
                  { key: 'generation', label: 'gen.', num: true },
                  { key: 'id', label: 'id', num: true, cell: (x) => link(['run', db, run, 'c', x.id], `#${x.id}`) },
                  { key: 'fitness', label: 'ppl', num: true, cell: (x) => fmt.ppl(x.fitness) + (x.fidelity === 'short' ? '*' : '') },
                  { key: 'step', label: 'step', num: true },
                  { key: 'origin', label: 'origin' },
                  { key: 'infix', label: 'metric', cell: (x) => h('code', null, x.infix ?? '?') },
                ],
                c.ancestors,
                { id: 'ancestors', short: true, onRow: (x) => (location.hash = route(['run', db, run, 'c', x.id])) },
              ))
            : null,
          panel('Children', null, brief(c.children, 'children', 'none yet')),
        ),
        h('section', { class: 'panel wide' }, h('h2', null, 'Evaluations'),
          table(
            [
              { key: 'id', label: 'id', num: true },
              ...(new Set(evs.map((e) => e.setting)).size > 1 ? [{ key: 'setting', label: 'setting', title: 'the sparsity and pattern of a search over several settings' }] : []),
              { key: 'fidelity', label: 'budget' },
              { key: 'tokens', label: 'tokens', num: true, cell: (e) => fmt.num(e.tokens) },
              { key: 'ppl', label: 'ppl', num: true, cell: (e) => fmt.ppl(e.ppl) },
              { key: 'seconds', label: 'time', num: true, cell: (e) => fmt.secs(e.seconds) },
              { key: 'worker', label: 'worker', num: true },
              { key: 'status', label: 'status', cell: (e) => h('span', { class: e.status === 'ok' || e.status === 'reused' ? null : 'bad' }, String(e.status)) },
              { key: 'reused_from', label: 'reused from', cell: (e) => (e.reused_from_individual !== null && e.reused_from_individual !== undefined ? link(['run', db, run, 'c', e.reused_from_individual], `#${e.reused_from_individual}`) : '') },
              { key: 'error', label: 'error', cell: (e) => h('code', null, e.error ?? '') },
              { key: 'created', label: 'finished' },
            ],
            evs,
            { id: 'evaluations', empty: 'not evaluated (yet)' },
          ),
        ),
        panel('Same masks', 'individuals with this fingerprint: they prune exactly the same weights', brief(c.sameMasks, 'same-masks', 'no other individual')),
        panel('Dropped for these masks', 'candidates never evaluated because their masks equalled these', table(
          [
            { key: 'step', label: 'step', num: true },
            { key: 'infix', label: 'metric', cell: (d) => h('code', null, d.infix) },
          ],
          c.maskDuplicates,
          { id: 'mask-duplicates', short: true, empty: 'none' },
        )),
        panel('Same canonical form', null, brief(c.sameCanonical, 'same-canonical', 'no other individual')),
        panel('Took its fitness', 'individuals that reused this one’s evaluations', brief(c.sharedBy, 'shared-by', 'none')),
      ),
    );
  }
  return { el, dbs: new Set([db]), crumbs: [[`run ${run}`, route(['run', db, run])], [`#${id}`, route(['run', db, run, 'c', id])]], refresh };
}
