// The node this page reads: the one that served it, or the one named by
// `?node=http://host:port` (that node must then allow this page's origin
// with --chephren-cors-origin).
//
// A node with tokens answers its API only with the read (or operator)
// token, sent as `Authorization: Bearer`. The page keeps it for this tab
// only (sessionStorage, per node), from the form the page shows when the
// node asks for it, or from a link `http://node:8080/#token=TOKEN` (as
// `deploy/local/cluster up` prints): a fragment never reaches a server or
// its logs, and the page takes it out of the address bar at once.

const requested = new URLSearchParams(location.search).get('node');

/** The Chephren URL of the node read, ending with `/`. */
export const nodeUrl = requested
  ? new URL(requested.replace(/\/*$/, '/'), location.href).href
  : new URL('.', location.href).href;

/** Whether the node read is not the one that served this page. */
export const remote = new URL(nodeUrl).origin !== location.origin;

const TOKEN_KEY = `cheops-read-token ${nodeUrl}`;

if (location.hash.startsWith('#token=')) {
  setToken(decodeURIComponent(location.hash.slice('#token='.length)));
  history.replaceState(null, '', `${location.pathname}${location.search}`);
}

/** The token sent to the node, if the page has one. */
export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

/** Keeps `value` as the token for this node (none when empty). */
export function setToken(value) {
  const trimmed = (value ?? '').trim();
  if (trimmed) sessionStorage.setItem(TOKEN_KEY, trimmed);
  else sessionStorage.removeItem(TOKEN_KEY);
}

function headers(accept) {
  const sent = { Accept: accept };
  const bearer = token();
  if (bearer) sent.Authorization = `Bearer ${bearer}`;
  return sent;
}

export function apiUrl(path) {
  return new URL(`api/${path}`, nodeUrl).href;
}

/** An API failure, with the node's own message when it gave one. */
export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }

  /** Whether the node wants a (different) token. */
  get locked() {
    return this.status === 401 || this.status === 403;
  }
}

function unreachable() {
  const hint = remote
    ? ` (is it up, and does it allow ${location.origin} with --chephren-cors-origin?)`
    : ' (is it up?)';
  return new ApiError(`Cannot reach ${nodeUrl}${hint}`, 0);
}

async function failure(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON: the status line says enough.
  }
  return new ApiError(body?.error ?? `${response.status} ${response.statusText}`, response.status);
}

export async function getJson(path) {
  let response;
  try {
    response = await fetch(apiUrl(path), { headers: headers('application/json') });
  } catch {
    throw unreachable();
  }
  if (!response.ok) throw await failure(response);
  return response.json();
}

/** How long the stream waits before reconnecting, as EventSource would. */
const RETRY_MS = 2000;
const KINDS = new Set(['resource', 'reply', 'peer', 'resync']);

/**
 * Follows the node's event stream. `onEvent` gets each event's JSON (with
 * its `event` kind); `onState` gets `live`, `reconnecting`, or `locked`
 * (the node refused the token: the stream stops until restarted). Read
 * with fetch rather than EventSource, which cannot send a token. It
 * reconnects by itself; events missed meanwhile are lost, so a caller
 * rereads what it shows whenever the stream (re)opens. Returns
 * `{close()}`.
 */
export function follow({ onEvent, onState }) {
  let closed = false;
  let controller = null;
  (async () => {
    while (!closed) {
      controller = new AbortController();
      try {
        const response = await fetch(apiUrl('events'), {
          headers: headers('text/event-stream'),
          cache: 'no-store',
          signal: controller.signal,
        });
        if (response.status === 401 || response.status === 403) {
          onState('locked');
          return;
        }
        if (!response.ok || !response.body) throw await failure(response);
        onState('live');
        await readEvents(response.body, onEvent);
      } catch {
        // Unreachable or cut: retried below, like any other end.
      }
      if (closed) return;
      onState('reconnecting');
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
    }
  })();
  return {
    close() {
      closed = true;
      controller?.abort();
    },
  };
}

/** Reads server-sent events (`event:` and `data:` lines, a blank line
 * ending each) until the stream ends. */
async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let kind = 'message';
  let data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, end).replace(/\r$/, '');
      buffer = buffer.slice(end + 1);
      if (line === '') {
        if (data.length && KINDS.has(kind)) dispatch(data.join('\n'), onEvent);
        kind = 'message';
        data = [];
      } else if (!line.startsWith(':')) {
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'event') kind = text;
        else if (field === 'data') data.push(text);
      }
    }
  }
}

function dispatch(data, onEvent) {
  try {
    onEvent(JSON.parse(data));
  } catch {
    onEvent({ event: 'resync' });
  }
}
