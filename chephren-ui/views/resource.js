// One resource: its block in order crossed with its sites, each cell what
// that site did with that operation (output on click), and its conflicts.

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
    root.append(h('a', { class: 'back', href: '#/resources' }, '← Resources'), head, conflicts, matrix, output, resolution);

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
