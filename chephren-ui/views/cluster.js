// The cluster: every site this node knows, whether it answers and since
// when, how many resources live there, and how the replication to it fares.

import { h, pill, when } from '../dom.js';

export const clusterView = {
  nav: 'cluster',

  // The app loads the cluster for every view; nothing more is needed.
  async load() {
    return null;
  },

  wants() {
    return true;
  },

  mount(root) {
    const summary = h('section', { class: 'tiles' });
    const warning = h('div', { class: 'banner warn', hidden: true });
    const grid = h('section', { class: 'sites', 'aria-label': 'Sites' });
    const note = h('p', { class: 'note' });
    root.append(h('h1', {}, 'Cluster'), warning, summary, grid, note);

    return {
      update(_data, cluster) {
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
        warning.hidden = problems.length === 0;
        warning.replaceChildren(...problems.map((text) => h('div', {}, text)));
        grid.replaceChildren(...cluster.sites.map((site) => siteCard(site, cluster.address)));
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
