// Chephren's entry point: hash routes to views, the live event stream, and
// the header. A view is `{nav, load(params), mount(root, params), wants(event,
// params)}`; `mount` returns `{update(data, cluster)}`. Every view is
// redrawn from the API whenever an event concerns it, so what is shown is
// always what the node holds, never a patch that could drift from it.

import { follow, getJson, nodeUrl, remote, setToken, token } from './api.js';
import { h, tick } from './dom.js';
import { clusterView } from './views/cluster.js';
import { resourcesView } from './views/resources.js';
import { resourceView } from './views/resource.js';

const root = document.getElementById('view');
const problem = document.getElementById('problem');
const live = document.getElementById('live');
const nodeName = document.getElementById('node-name');
const tokenForm = document.getElementById('token-form');
const tokenInput = document.getElementById('token-input');

/** The view shown: its definition, its parameters and its mounted instance. */
let current = null;

function route() {
  const path = decodeURIComponent(location.hash.replace(/^#\/?/, ''));
  if (path === 'resources') return { view: resourcesView, params: {} };
  if (path.startsWith('resource/')) {
    return { view: resourceView, params: { id: path.slice('resource/'.length) } };
  }
  return { view: clusterView, params: {} };
}

function show() {
  const { view, params } = route();
  root.replaceChildren();
  current = { view, params, instance: view.mount(root, params) };
  for (const link of document.querySelectorAll('[data-nav]')) {
    link.classList.toggle('active', link.dataset.nav === view.nav);
  }
  refresh();
}

// At most one load runs; events during it ask for one more afterwards, so a
// burst of replies costs two loads, not one per reply.
let loading = false;
let again = false;

async function refresh() {
  if (loading) {
    again = true;
    return;
  }
  loading = true;
  try {
    do {
      again = false;
      await load(current);
    } while (again);
  } finally {
    loading = false;
  }
}

async function load(target) {
  try {
    const [cluster, data] = await Promise.all([getJson('cluster'), target.view.load(target.params)]);
    if (target !== current) return;
    header(cluster);
    target.instance.update(data, cluster);
    setProblem(null);
    // The node answered: whatever token it wanted, it has it.
    tokenForm.hidden = true;
  } catch (error) {
    if (target !== current) return;
    setProblem(error.message);
    if (error.locked) askToken();
  }
}

function header(cluster) {
  const peers = cluster.sites;
  const online = peers.filter((site) => site.state === 'ONLINE').length;
  nodeName.replaceChildren(
    h('strong', {}, cluster.site),
    h('span', { class: 'muted' }, ` · ${online}/${peers.length} sites online`),
  );
  nodeName.title = `Reading ${nodeUrl}`;
  document.title = `${cluster.site} · Chephren`;
}

function setProblem(message) {
  problem.hidden = !message;
  problem.textContent = message ?? '';
}

function setLive(state) {
  live.dataset.state = state;
  live.textContent = state;
}

/** Shows the token form: the node refused to answer without (this) token. */
function askToken() {
  tokenForm.querySelector('.why').textContent = token()
    ? 'This node refused the token given.'
    : 'This node answers only with its read token.';
  tokenForm.hidden = false;
  tokenInput.focus();
}

function tokenFormSetUp() {
  tokenForm.addEventListener('submit', (event) => {
    event.preventDefault();
    setToken(tokenInput.value);
    tokenInput.value = '';
    tokenForm.hidden = true;
    setProblem(null);
    // A new token: the stream starts over with it, and the view rereads.
    stream.close();
    stream = startStream();
    refresh();
  });
}

function nodeForm() {
  const form = document.getElementById('node-form');
  const input = document.getElementById('node-input');
  if (remote) input.value = nodeUrl;
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const target = new URL(location.href);
    const value = input.value.trim();
    if (value) target.searchParams.set('node', value);
    else target.searchParams.delete('node');
    location.assign(target.href);
  });
}

function startStream() {
  return follow({
    onEvent(event) {
      if (current && current.view.wants(event, current.params)) refresh();
    },
    onState(state) {
      setLive(state);
      // Whatever happened while the stream was down was not seen: reread.
      if (state === 'live') refresh();
      if (state === 'locked') askToken();
    },
  });
}

nodeForm();
tokenFormSetUp();
window.addEventListener('hashchange', show);
show();
let stream = startStream();
setInterval(tick, 1000);
