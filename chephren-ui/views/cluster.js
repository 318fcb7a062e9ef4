// The cluster: every site this node knows, whether it answers and since
// when, how many resources live there, and how the replication to it fares;
// this node's hooks and their last deliveries; and its changes feed, live.

import { getJson } from '../api.js';
import { h, pill, shortId, when } from '../dom.js';

/** How many of the feed's last events the page shows. */
const FEED_EVENTS = 30;

export const clusterView = {
  nav: 'cluster',

  // The app loads the cluster for every view; the feed is this view's.
  async load() {
    return getJson(`feed?limit=${FEED_EVENTS}`);
  },

  wants() {
    return true;
  },

  mount(root) {
    const summary = h('section', { class: 'tiles' });
    const warning = h('div', { class: 'banner warn', hidden: true });
    const grid = h('section', { class: 'sites', 'aria-label': 'Sites' });
    const note = h('p', { class: 'note' });
    const hooks = h('section', { class: 'hooks', 'aria-label': 'Hooks' });
    const feed = h('section', { class: 'feed', 'aria-label': 'Changes' });
    root.append(h('h1', {}, 'Cluster'), warning, summary, grid, note, hooks, feed);

    return {
      update(events, cluster) {
        const online = cluster.sites.filter((site) => site.state === 'ONLINE').length;
        summary.replaceChildren(
          tile('Sites online', `${online} / ${cluster.sites.length}`, online === cluster.sites.length ? 'good' : 'bad'),
          tile('Resources here', cluster.resources),
          tile('Not converged', cluster.unconverged, cluster.unconverged ? 'warn' : 'good'),
          tile('Changes follower', cluster.followerLive ? 'live' : 'down', cluster.followerLive ? 'good' : 'bad'),
        );
        const problems = [];
        if (!cluster.database) problems.push(`${cluster.site} cannot read its CouchDB: resource counts are unknown.`);
        if (!cluster.followerLive) {
          problems.push(`${cluster.site}'s changes follower is not connected${cluster.lastError ? `: ${cluster.lastError}` : ''}.`);
        }
        for (const task of cluster.tasks || []) {
          if (task.state === 'failed' || task.state === 'retrying') {
            const why = task.last_error ? `: ${task.last_error}` : '';
            problems.push(`${cluster.site}'s ${task.name} task is ${task.state} (${task.failures} failures)${why}.`);
          }
        }
        for (const site of cluster.sites) {
          const replication = site.replication;
          if (!replication) continue;
          if (['error', 'crashing', 'failed', 'missing'].includes(replication.state)) {
            problems.push(`The replication from ${cluster.site} to ${site.site} is ${replication.state}: ${site.site} gets no new operation until it is repaired.`);
          }
          if (replication.resend !== 'none') {
            problems.push(`The replication to ${site.site} could not write some documents (${replication.write_failures} counted); they are sent again until every one is written.`);
          }
        }
        for (const hook of cluster.hooks || []) {
          const last = hook.last[0];
          if (last && !last.delivered) {
            problems.push(`Hook ${hook.name} gave up a ${last.event} event of ${last.resource} after ${last.attempts} attempts (${last.result}).`);
          }
        }
        for (const over of cluster.oversize || []) {
          problems.push(`Resource ${over.resource} cannot be merged: its concurrent blocks together take ${over.bytes} bytes, over the ${over.limit}-byte document limit. It refuses new operations.`);
        }
        warning.hidden = problems.length === 0;
        warning.replaceChildren(...problems.map((text) => h('div', {}, text)));
        grid.replaceChildren(...cluster.sites.map((site) => siteCard(site, cluster.address)));
        hooks.hidden = !(cluster.hooks || []).length;
        hooks.replaceChildren(h('h2', {}, 'Hooks'), ...(cluster.hooks || []).map(hookCard));
        feed.replaceChildren(h('h2', {}, `Changes on ${cluster.site}`), feedTable(events || []));
        note.textContent =
          `As seen from ${cluster.site}. A peer is online when both its CouchDB and its Cheops API answer a probe; ` +
          'unknown sites are named by a resource but not probed yet.';
      },
    };
  },
};

function tile(label, value, tone = '') {
  return h('div', { class: `tile ${tone}` }, h('div', { class: 'tile-value' }, value), h('div', { class: 'tile-label' }, label));
}

function siteCard(site, address) {
  const state = site.state.toLowerCase();
  return h(
    'article',
    { class: `site ${state}`, data: { site: site.site, state } },
    h(
      'header',
      {},
      h('span', { class: `dot ${state}`, 'aria-hidden': 'true' }),
      h('h2', {}, site.site),
      site.local ? h('span', { class: 'tag' }, 'this node') : null,
      pill(site.state),
    ),
    h(
      'dl',
      {},
      site.local ? h('dt', {}, 'Address') : h('dt', {}, state === 'online' ? 'Online' : state === 'offline' ? 'Offline' : 'State'),
      site.local
        ? h('dd', {}, h('code', {}, address))
        : h('dd', {}, site.since ? when(site.since, { prefix: 'since' }) : 'not probed yet'),
      h('dt', {}, 'CouchDB'),
      h('dd', {}, check(site.couchdb)),
      h('dt', {}, 'Cheops API'),
      h('dd', {}, check(site.api)),
      h('dt', {}, 'Resources'),
      h('dd', { class: 'count' }, site.resources),
      site.replication ? h('dt', {}, 'Replication') : null,
      site.replication ? h('dd', {}, replicationText(site.replication)) : null,
    ),
  );
}

// A hook: what its deliveries came to, and the last ones.
function hookCard(hook) {
  const counts = [
    ['delivered', hook.delivered],
    ['failed attempts', hook.failed_attempts],
    ['given up', hook.abandoned],
    ['delivered elsewhere', hook.delivered_elsewhere],
    ['not looked at yet', hook.backlog],
  ];
  return h(
    'article',
    { class: 'hook', data: { hook: hook.name } },
    h('h3', {}, hook.name),
    h('p', { class: 'counts' }, counts.map(([label, n]) => h('span', { class: 'count-pair' }, h('strong', {}, n), ` ${label}`))),
    hook.last.length
      ? h(
          'table',
          { class: 'list deliveries' },
          h('thead', {}, h('tr', {}, ['Event', 'Resource', 'Request', 'Result', 'Attempts', 'When'].map((t) => h('th', {}, t)))),
          h(
            'tbody',
            {},
            hook.last.map((d) =>
              h(
                'tr',
                { data: { event: d.event, delivered: String(d.delivered) } },
                h('td', {}, d.event),
                h('td', {}, h('a', { href: `#/resource/${encodeURIComponent(d.resource)}` }, d.resource)),
                h('td', {}, shortId(d.request)),
                h('td', {}, h('span', { class: d.delivered ? 'yes' : 'no' }, d.result)),
                h('td', { class: 'num' }, d.attempts),
                h('td', {}, when(d.at)),
              ),
            ),
          ),
        )
      : h('p', { class: 'muted' }, 'No delivery yet.'),
  );
}

// The feed's last events, newest first.
function feedTable(events) {
  if (!events.length) return h('p', { class: 'empty' }, 'Nothing has happened on this node yet.');
  return h(
    'table',
    { class: 'list feed-events' },
    h('thead', {}, h('tr', {}, ['#', 'Event', 'Resource', 'Request', 'Site', 'When'].map((t) => h('th', {}, t)))),
    h(
      'tbody',
      {},
      events.map((event) =>
        h(
          'tr',
          { data: { type: event.type, of: event.resource, seq: String(event.seq) } },
          h('td', { class: 'num' }, event.seq),
          h('td', {}, event.type, event.status ? [' ', pill(event.status)] : null),
          h('td', {}, h('a', { href: `#/resource/${encodeURIComponent(event.resource)}` }, event.resource)),
          h('td', {}, event.request ? shortId(event.request) : '—'),
          h('td', {}, event.site ?? ''),
          h('td', {}, when(event.time)),
        ),
      ),
    ),
  );
}

function check(answered) {
  if (answered === null || answered === undefined) return h('span', { class: 'muted' }, 'unknown');
  return answered ? h('span', { class: 'yes' }, 'answers') : h('span', { class: 'no' }, 'no answer');
}

// The replication to a peer in a few words: its state and, until they are
// sent again, the documents it could not write (its count of failures
// lasts as long as its job, past the resend).
function replicationText(replication) {
  const broken = ['error', 'crashing', 'failed', 'missing'].includes(replication.state);
  const parts = [h('span', { class: broken ? 'no' : 'yes' }, replication.state)];
  if (replication.resend === 'due') parts.push(`, ${replication.write_failures} not written, resend due`);
  if (replication.resend === 'running') parts.push(`, ${replication.write_failures} not written, resending`);
  return h('span', { data: { replication: replication.state } }, ...parts);
}
