// Building elements and showing times. Text always goes in as text nodes,
// never as HTML: commands and outputs come from users.

/**
 * `h('a', {class: 'x', href: '#/', data: {site: 's1'}, onclick: f}, 'text', child, [more])`.
 * Null, undefined and false props and children are left out.
 */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'class') element.className = value;
    else if (name === 'data') Object.assign(element.dataset, value);
    else if (name.startsWith('on')) element.addEventListener(name.slice(2), value);
    else element.setAttribute(name, value === true ? '' : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

/**
 * A time from the API as a Date; `null` for Go's zero time (never). The
 * API keeps nanoseconds, which Date does not read.
 */
export function parseTime(text) {
  if (!text || text.startsWith('0001-01-01')) return null;
  const date = new Date(text.replace(/(\.\d{3})\d+/, '$1'));
  return Number.isNaN(date.getTime()) ? null : date;
}

const UNITS = [
  [86400, 'd'],
  [3600, 'h'],
  [60, 'min'],
  [1, 's'],
];

/** "12 s ago", "3 min ago", "just now". */
export function relative(date, now = Date.now()) {
  const seconds = Math.round((now - date.getTime()) / 1000);
  const span = Math.abs(seconds);
  if (span < 3) return 'just now';
  for (const [size, unit] of UNITS) {
    if (span >= size) {
      const count = Math.floor(span / size);
      return seconds < 0 ? `in ${count} ${unit}` : `${count} ${unit} ago`;
    }
  }
  return 'just now';
}

const pad = (n) => String(n).padStart(2, '0');

/** Local wall-clock time; the date too unless it is today. */
export function absolute(date) {
  const clock = `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
  const today = new Date();
  if (date.toDateString() === today.toDateString()) return clock;
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${clock}`;
}

/**
 * A time shown both ways, "12 s ago · 14:03:07", the full instant on hover.
 * The relative part is kept current by `tick`.
 */
export function when(text, { prefix = '' } = {}) {
  const date = parseTime(text);
  if (!date) return h('span', { class: 'when never' }, prefix ? `${prefix} never` : 'never');
  return h(
    'time',
    { class: 'when', datetime: date.toISOString(), title: `${text}` },
    prefix ? `${prefix} ` : '',
    h('span', { class: 'rel', data: { t: String(date.getTime()) } }, relative(date)),
    h('span', { class: 'abs' }, absolute(date)),
  );
}

/** Refreshes every relative time on the page. */
export function tick() {
  const now = Date.now();
  for (const element of document.querySelectorAll('.rel[data-t]')) {
    const text = relative(new Date(Number(element.dataset.t)), now);
    if (element.textContent !== text) element.textContent = text;
  }
}

/** A request id short enough for a table, whole on hover. */
export function shortId(id) {
  return h('code', { class: 'id', title: id }, id.length > 10 ? `${id.slice(0, 8)}…` : id);
}

/** A status pill: OK, KO, PENDING, ONLINE, OFFLINE, UNKNOWN. */
export function pill(status, label = status) {
  return h('span', { class: `pill ${status.toLowerCase()}` }, label);
}
