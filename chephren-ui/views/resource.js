// One resource: its block in order crossed with its sites, each cell what
// that site did with that operation (output on click), its conflicts, and
// its history: every operation ever accepted, oldest first, a page at a
// time (the node holds no more than a page in memory to answer).

import { ApiError, getJson } from '../api.js';
import { h, pill, shortId, when } from '../dom.js';

export const resourceView = {
  nav: 'resources',

  /** `null` when the resource does not live here (yet): it may appear live. */
  async load({ id }) {
    try {
      return await getJson(`block/${encodeURIComponent(id)}`);
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) return null;
      throw error;
    }
  },

  wants(event, { id }) {
    return event.event === 'peer' || event.event === 'resync' || event.id === id || event.resource === id;
  },

  mount(root, { id }) {
    /** The cell whose output is open: `{request, site}`. */
    let selected = null;
    let last = null;
    const head = h('div', { class: 'resource-head' });
    const conflicts = h('div');
    const matrix = h('div', { class: 'matrix-wrap' });
    const output = h('section', { class: 'output', hidden: true, 'aria-live': 'polite' });
    const resolution = h('div');
    const history = historySection(id);
    root.append(
      h('a', { class: 'back', href: '#/resources' }, '← Resources'),
      head,
      conflicts,
      matrix,
      output,
      history.element,
      resolution,
    );

    function draw() {
      const [block, cluster] = last;
      if (!block) {
        head.replaceChildren(h('h1', {}, id));
        matrix.replaceChildren(
          h('div', { class: 'empty' }, h('p', {}, `No resource ${id} on ${cluster.site} yet. This page updates when it arrives.`)),
        );
        for (const section of [conflicts, output, resolution]) section.replaceChildren();
        output.hidden = true;
        return;
      }
      const states = new Map(cluster.sites.map((site) => [site.site, site.state]));
      head.replaceChildren(...header(block));
      conflicts.replaceChildren(...conflictPanel(block));
      matrix.replaceChildren(table(block, states));
      drawOutput(block);
      resolution.replaceChildren(...resolutionTable(block));
    }

    function table(block, states) {
      if (block.operations.length === 0) return h('div', { class: 'empty' }, h('p', {}, 'The block is empty.'));
      return h(
        'table',
        { class: 'matrix' },
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            h('th', { class: 'num' }, '#'),
            h('th', {}, 'Operation'),
            block.locations.map((site) => {
              const state = (states.get(site) ?? 'UNKNOWN').toLowerCase();
              return h(
                'th',
                { class: 'site-col', data: { site } },
                h('span', { class: `dot ${state}`, title: state }),
                site,
              );
            }),
          ),
        ),
        h(
          'tbody',
          {},
          block.operations.map((op, index) =>
            h(
              'tr',
              { class: 'op', data: { request: op.requestId } },
              h('td', { class: 'num' }, index + 1),
              h('td', { class: 'operation' }, operation(op)),
              op.replies.map((reply) => cell(op, reply, states)),
            ),
          ),
        ),
      );
    }

    function cell(op, reply, states) {
      const status = reply.status.toLowerCase();
      const offline = reply.status === 'PENDING' && states.get(reply.site) === 'OFFLINE';
      const isSelected = selected && selected.request === op.requestId && selected.site === reply.site;
      return h(
        'td',
        { class: 'cell-td' },
        h(
          'button',
          {
            type: 'button',
            class: `cell ${status}${isSelected ? ' selected' : ''}`,
            data: { site: reply.site, status: reply.status, request: op.requestId },
            title: reply.status === 'PENDING' ? `${reply.site} has not replied yet` : `Show ${reply.site}'s output`,
            onclick: () => {
              selected = isSelected ? null : { request: op.requestId, site: reply.site };
              draw();
            },
          },
          h('span', { class: 'cell-status' }, reply.status === 'PENDING' ? 'pending' : reply.status),
          reply.runs > 1 ? h('span', { class: 'runs', title: `ran ${reply.runs} times` }, `×${reply.runs}`) : null,
          offline ? h('span', { class: 'cell-note' }, 'site offline') : null,
          reply.executionTime ? h('span', { class: 'cell-note' }, when(reply.executionTime)) : null,
        ),
      );
    }

    function drawOutput(block) {
      const op = selected && block.operations.find((o) => o.requestId === selected.request);
      const reply = op && op.replies.find((r) => r.site === selected.site);
      output.hidden = !reply;
      if (!reply) {
        output.replaceChildren();
        return;
      }
      output.replaceChildren(
        h(
          'header',
          {},
          pill(reply.status, reply.status === 'PENDING' ? 'pending' : reply.status),
          h('strong', {}, reply.site),
          h('span', { class: 'muted' }, ' · '),
          h('code', {}, op.command),
          h('span', { class: 'spacer' }),
          reply.executionTime ? when(reply.executionTime, { prefix: 'ran' }) : null,
          h('button', { type: 'button', class: 'close', title: 'Close', onclick: () => ((selected = null), draw()) }, '×'),
        ),
        reply.status === 'PENDING'
          ? h('p', { class: 'muted' }, `${reply.site} has not replied to this operation yet.`)
          : h('pre', { class: 'out' }, reply.output || h('span', { class: 'muted' }, '(no output)')),
      );
    }

    return {
      update(block, cluster) {
        last = [block, cluster];
        draw();
        history.reload();
      },
    };
  },
};

function header(block) {
  const pending = block.operations.flatMap((op) => op.replies).filter((r) => r.status === 'PENDING').length;
  const ko = block.operations.flatMap((op) => op.replies).filter((r) => r.status === 'KO').length;
  const state = block.converged
    ? h('span', { class: 'badge good', data: { converged: 'true' } }, '✓ Converged')
    : h(
        'span',
        { class: 'badge warn', data: { converged: 'false' } },
        block.conflicts.length ? 'Conflicting revisions' : `Converging · ${pending} pending`,
      );
  return [
    h('h1', {}, block.id, ' ', state),
    h(
      'div',
      { class: 'facts' },
      h('span', {}, 'Sites ', h('span', { class: 'chips' }, block.locations.map((site) => h('span', { class: 'chip' }, site)))),
      h('span', {}, `${block.operations.length} operation${block.operations.length === 1 ? '' : 's'} in the block`),
      ko ? h('span', { class: 'ko-text' }, `${ko} KO`) : null,
      h('span', {}, 'Updated ', when(block.lastUpdate)),
    ),
  ];
}

function operation(op) {
  return [
    h(
      'div',
      { class: 'op-line' },
      h('span', { class: 'type' }, op.type || '(no type)'),
      h('code', { class: 'command' }, op.command),
    ),
    h(
      'div',
      { class: 'op-meta' },
      shortId(op.requestId),
      op.files.map((name) => h('span', { class: 'file', title: 'attached file' }, name)),
      when(op.time),
    ),
  ];
}

function conflictPanel(block) {
  if (block.conflicts.length === 0) return [];
  return [
    h(
      'section',
      { class: 'banner conflict', data: { conflicts: String(block.conflicts.length) } },
      h('strong', {}, `${block.conflicts.length} unresolved conflicting revision${block.conflicts.length === 1 ? '' : 's'}`),
      h(
        'p',
        {},
        'Sites wrote this resource concurrently. Every site merges the revisions the same way with the resolution matrix; ',
        'this clears once a site has written the merge.',
      ),
      h('div', { class: 'chips' }, block.conflicts.map((rev) => h('code', { class: 'chip' }, rev))),
    ),
  ];
}

function resolutionTable(block) {
  if (block.resolutionMatrix.length === 0) {
    return [h('p', { class: 'note' }, 'No resolution matrix: every pair of operations is take-both-any-order.')];
  }
  return [
    h('h2', {}, 'Resolution matrix'),
    h(
      'table',
      { class: 'resolution' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Before'), h('th', {}, 'After'), h('th', {}, 'Result'))),
      h(
        'tbody',
        {},
        block.resolutionMatrix.map((r) =>
          h('tr', {}, h('td', {}, h('span', { class: 'type' }, r.before)), h('td', {}, h('span', { class: 'type' }, r.after)), h('td', {}, h('code', {}, r.result))),
        ),
      ),
    ),
  ];
}

/** Operations per history page. */
const HISTORY_PAGE = 50;

/**
 * The history section: one page of the resource's history, oldest first,
 * each operation with every site's latest reply status. "Next page" starts
 * after the page's last operation; "First page" goes back. A reload (any
 * event about the resource) rereads the page shown.
 */
function historySection(id) {
  const element = h('section', { class: 'history' });
  /** The cursors of the pages before the one shown: `{time, request}`. */
  const before = [];
  let after = null;
  let loading = null;

  async function reload() {
    const query = new URLSearchParams({ limit: String(HISTORY_PAGE) });
    if (after) {
      query.set('afterTime', after.time);
      query.set('afterRequest', after.request);
    }
    const asked = `history/${encodeURIComponent(id)}?${query}`;
    loading = asked;
    try {
      const page = await getJson(asked);
      if (loading === asked) draw(page);
    } catch (error) {
      if (loading !== asked) return;
      if (error instanceof ApiError && error.status === 404) element.replaceChildren();
      else element.replaceChildren(h('h2', {}, 'History'), h('p', { class: 'note' }, `Cannot read the history: ${error.message}`));
    }
  }

  function move(cursor) {
    after = cursor;
    reload();
  }

  function draw(page) {
    const first = before.length * HISTORY_PAGE;
    const last = page.entries[page.entries.length - 1];
    const nav = h(
      'div',
      { class: 'history-nav' },
      before.length
        ? h('button', { type: 'button', class: 'history-first', onclick: () => ((before.length = 0), move(null)) }, '« First page')
        : null,
      page.more && last
        ? h(
            'button',
            {
              type: 'button',
              class: 'history-more',
              onclick: () => {
                before.push(after);
                move({ time: last.Time, request: last.RequestId });
              },
            },
            `Next ${HISTORY_PAGE} →`,
          )
        : null,
    );
    element.replaceChildren(
      h('h2', {}, 'History ', h('span', { class: 'muted' }, 'every operation ever accepted, oldest first')),
      page.entries.length === 0
        ? h('p', { class: 'note' }, 'No operation yet.')
        : h(
            'table',
            { class: 'list history-table' },
            h('thead', {}, h('tr', {}, h('th', { class: 'num' }, '#'), h('th', {}, 'Operation'), h('th', {}, 'Replies'))),
            h(
              'tbody',
              {},
              page.entries.map((entry, index) =>
                h(
                  'tr',
                  { class: 'history-op', data: { request: entry.RequestId, inBlock: String(entry.InBlock) } },
                  h('td', { class: 'num' }, first + index + 1),
                  h('td', { class: 'operation' }, historyOperation(entry)),
                  h('td', {}, h('span', { class: 'chips' }, siteStatuses(entry))),
                ),
              ),
            ),
          ),
      nav,
    );
  }

  return { element, reload };
}

function historyOperation(entry) {
  return [
    h(
      'div',
      { class: 'op-line' },
      h('span', { class: 'type' }, entry.Type || '(no type)'),
      h('code', { class: 'command' }, entry.Pruned && !entry.Command ? '(pruned)' : entry.Command),
    ),
    h(
      'div',
      { class: 'op-meta' },
      shortId(entry.RequestId),
      entry.Files.map((file) => h('span', { class: 'file', title: `${file.Size} bytes` }, file.Name)),
      when(entry.Time),
      entry.InBlock ? h('span', { class: 'chip', title: 'still in the current block' }, 'in block') : null,
    ),
  ];
}

/** Each site's latest reply (replies come oldest first), with `×N` reruns. */
function siteStatuses(entry) {
  if (entry.Replies.length === 0) return h('span', { class: 'muted' }, 'no reply yet');
  const sites = new Map();
  for (const reply of entry.Replies) {
    const seen = sites.get(reply.Site);
    sites.set(reply.Site, { status: reply.Status, runs: (seen?.runs ?? 0) + 1 });
  }
  return [...sites.entries()]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([site, { status, runs }]) =>
      h(
        'span',
        { class: `pill reply ${status.toLowerCase()}`, data: { site, status }, title: runs > 1 ? `ran ${runs} times` : null },
        `${site} ${status}${runs > 1 ? ` ×${runs}` : ''}`,
      ),
    );
}
