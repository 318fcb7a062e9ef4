// The resources of this node, most recently updated first, with a mark on
// those whose replies or conflicts show they have not converged.

import { getJson } from '../api.js';
import { h, when } from '../dom.js';

export const resourcesView = {
  nav: 'resources',

  load() {
    return getJson('blocks');
  },

  // Peer events too: the header counts the sites online.
  wants() {
    return true;
  },

  mount(root) {
    let list = [];
    const filter = h('input', {
      type: 'search',
      class: 'filter',
      placeholder: 'Filter by id',
      'aria-label': 'Filter by id',
      spellcheck: 'false',
    });
    const onlyPending = h('input', { type: 'checkbox' });
    const count = h('span', { class: 'muted' });
    const body = h('tbody');
    const empty = h('div', { class: 'empty', hidden: true });
    const table = h(
      'table',
      { class: 'list', hidden: true },
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          h('th', { class: 'mark-col' }, h('span', { class: 'sr' }, 'Converged')),
          h('th', {}, 'Resource'),
          h('th', {}, 'Sites'),
          h('th', { class: 'num' }, 'Ops'),
          h('th', {}, 'Last command'),
          h('th', {}, 'Replies'),
          h('th', {}, 'Last update'),
        ),
      ),
      body,
    );
    root.append(
      h('h1', {}, 'Resources'),
      h('div', { class: 'toolbar' }, filter, h('label', { class: 'toggle' }, onlyPending, 'Not converged only'), count),
      table,
      empty,
    );

    function draw() {
      const text = filter.value.trim().toLowerCase();
      const shown = list.filter(
        (resource) => resource.id.toLowerCase().includes(text) && (!onlyPending.checked || !resource.converged),
      );
      body.replaceChildren(...shown.map(row));
      const unconverged = list.filter((resource) => !resource.converged).length;
      count.textContent = `${shown.length} of ${list.length} · ${unconverged} not converged`;
      table.hidden = shown.length === 0;
      empty.hidden = shown.length !== 0;
      empty.replaceChildren(
        ...(list.length === 0
          ? [
              h('p', {}, 'No resource lives on this node yet. Send an operation to create one:'),
              h('pre', {}, "curl -F 'sites=site1&site2' -F 'type=set' -F 'command=echo hello' http://NODE:8079/exec/greeting"),
            ]
          : [h('p', {}, 'No resource matches.')]),
      );
    }
    filter.addEventListener('input', draw);
    onlyPending.addEventListener('change', draw);

    return {
      update(data) {
        list = data;
        draw();
      },
    };
  },
};

function row(resource) {
  const link = `#/resource/${encodeURIComponent(resource.id)}`;
  return h(
    'tr',
    {
      data: { resource: resource.id, converged: String(resource.converged) },
      onclick: (event) => {
        if (!event.target.closest('a')) location.hash = link;
      },
    },
    h('td', { class: 'mark-col' }, mark(resource)),
    h('td', {}, h('a', { href: link, class: 'rid' }, resource.id)),
    h('td', {}, h('span', { class: 'chips' }, resource.locations.map((site) => h('span', { class: 'chip' }, site)))),
    h('td', { class: 'num' }, resource.operationsCount),
    h('td', { class: 'cmd' }, h('code', { title: resource.lastCommand ?? '' }, resource.lastCommand ?? '—')),
    h('td', {}, tally(resource)),
    h('td', {}, when(resource.lastUpdate)),
  );
}

function mark(resource) {
  if (resource.conflicts) return h('span', { class: 'mark conflict', title: `${resource.conflicts} unresolved conflict(s)` }, '!');
  if (!resource.converged) return h('span', { class: 'mark pending', title: 'Not converged: replies pending' }, '◔');
  return h('span', { class: 'mark ok', title: 'Converged: every site replied to every operation' }, '✓');
}

/** The reply cells by status, as a small stacked bar with counts. */
function tally({ ok, ko, pending }) {
  const total = ok + ko + pending || 1;
  const part = (count, kind) =>
    count ? h('span', { class: `seg ${kind}`, style: `flex-grow:${count / total}` }) : null;
  return h(
    'span',
    { class: 'tally', title: `${ok} OK, ${ko} KO, ${pending} pending` },
    h('span', { class: 'bar' }, part(ok, 'ok'), part(ko, 'ko'), part(pending, 'pending')),
    h(
      'span',
      { class: 'counts' },
      h('span', { class: 'ok-text' }, `${ok} OK`),
      ko ? h('span', { class: 'ko-text' }, ` · ${ko} KO`) : null,
      pending ? h('span', { class: 'pending-text' }, ` · ${pending} pending`) : null,
    ),
  );
}
