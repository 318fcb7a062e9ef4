// The node this page reads: the one that served it, or the one named by
// `?node=http://host:port` (that node must then allow this page's origin
// with --chephren-cors-origin).

const requested = new URLSearchParams(location.search).get('node');

/** The Chephren URL of the node read, ending with `/`. */
export const nodeUrl = requested
  ? new URL(requested.replace(/\/*$/, '/'), location.href).href
  : new URL('.', location.href).href;

/** Whether the node read is not the one that served this page. */
export const remote = new URL(nodeUrl).origin !== location.origin;

export function apiUrl(path) {
  return new URL(`api/${path}`, nodeUrl).href;
}

/** An API failure, with the node's own message when it gave one. */
export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

export async function getJson(path) {
  let response;
  try {
    response = await fetch(apiUrl(path), { headers: { Accept: 'application/json' } });
  } catch (cause) {
    const hint = remote
      ? ` (is it up, and does it allow ${location.origin} with --chephren-cors-origin?)`
      : ' (is it up?)';
    throw new ApiError(`Cannot reach ${nodeUrl}${hint}`, 0);
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON: the status line says enough.
  }
  if (!response.ok) {
    throw new ApiError(body?.error ?? `${response.status} ${response.statusText}`, response.status);
  }
  return body;
}

/**
 * Follows the node's event stream. `onEvent` gets each event's JSON (with
 * its `event` kind); `onState` gets `live` or `reconnecting`. The browser
 * reconnects by itself; events missed meanwhile are lost, so a caller
 * rereads what it shows whenever the stream (re)opens.
 */
export function follow({ onEvent, onState }) {
  const source = new EventSource(apiUrl('events'));
  source.addEventListener('open', () => onState('live'));
  source.addEventListener('error', () => onState('reconnecting'));
  for (const kind of ['resource', 'reply', 'peer', 'resync']) {
    source.addEventListener(kind, (message) => {
      try {
        onEvent(JSON.parse(message.data));
      } catch {
        onEvent({ event: 'resync' });
      }
    });
  }
  return source;
}
