// The page: a hash router over four views, kept live by the server's event stream. A view
// builds its elements once and refreshes their contents when its database changes, so
// charts grow and tables keep their sort order without the page reloading.
import { h, keepingFocus } from './dom.js';
import { runsView } from './runs-view.js';
import { runView } from './run-view.js';
import { candidateView } from './candidate-view.js';
import { compareView } from './compare-view.js';

const main = document.getElementById('view');
const crumbs = document.getElementById('crumbs');
const live = document.getElementById('live');
let current = null;

function viewFor(hash) {
  const parts = hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  const int = (s) => (/^\d+$/.test(s ?? '') ? Number(s) : null);
  if (parts[0] === 'run' && parts.length === 3 && int(parts[1]) !== null && int(parts[2]) !== null) return runView(int(parts[1]), int(parts[2]));
  if (parts[0] === 'run' && parts.length === 5 && parts[3] === 'c' && [1, 2, 4].every((i) => int(parts[i]) !== null)) return candidateView(int(parts[1]), int(parts[2]), int(parts[4]));
  if (parts[0] === 'compare' && parts[1]) return compareView(parts[1]);
  return runsView();
}

function show() {
  current = viewFor(location.hash);
  // For tests and scripts: which view is shown and how often it has loaded its data.
  document.body.dataset.view = location.hash || '#/';
  document.body.dataset.refreshed = '0';
  main.replaceChildren(current.el);
  crumbs.replaceChildren(
    h('a', { href: '#/' }, 'runs'),
    ...current.crumbs.flatMap(([label, href]) => [h('span', { class: 'sep' }, '›'), href ? h('a', { href }, label) : h('span', null, label)]),
  );
  window.scrollTo(0, 0);
  refresh();
}

let busy = false;
let again = false;
async function refresh() {
  if (busy) {
    again = true;
    return;
  }
  busy = true;
  const view = current;
  try {
    await keepingFocus(() => view.refresh());
    view.el.querySelector(':scope > .error-box')?.remove();
    if (view === current) document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed) + 1);
  } catch (e) {
    const box = view.el.querySelector(':scope > .error-box') ?? h('div', { class: 'error-box' });
    box.textContent = `Could not load: ${e.message}`;
    view.el.prepend(box);
  } finally {
    busy = false;
    if (again) {
      again = false;
      refresh();
    }
  }
}

// Commits arrive one per evaluation; gather those of a quarter second into one refresh.
let timer = null;
function soon() {
  if (timer === null) timer = setTimeout(() => ((timer = null), refresh()), 250);
}

const events = new EventSource('/api/events');
events.addEventListener('hello', () => {
  live.className = 'live on';
  live.textContent = 'live';
  soon(); // after a reconnection: catch up on what changed meanwhile
});
events.addEventListener('change', (e) => {
  const { db } = JSON.parse(e.data);
  if (!current.dbs || current.dbs.has(db)) soon();
});
events.onerror = () => {
  live.className = 'live off';
  live.textContent = 'reconnecting…';
};
// Times shown as "… ago" and the staleness of running runs move on even when nothing is written.
setInterval(soon, 30000);

window.addEventListener('hashchange', show);
show();
