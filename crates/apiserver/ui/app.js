// podvisor web view (docs/design/0009-web-view.md): plain JavaScript, no build step, no
// framework. Every piece of data comes from the Kubernetes API of the server that served this
// file, called with the user's bearer token (so RBAC applies as for kubectl). Pages:
//   #/                    the cluster: nodes, namespaces, pods by phase (live), events
//   #/pod/<ns>/<name>     a pod: summary, conditions, containers, the timeline as a Gantt
//                         chart (SVG/PNG download), logs, events; for a removed pod what is
//                         still kept (its timeline)
// Text from the API is only ever set as text (textContent / SVG attributes), never as HTML.
'use strict';

(function () {
  const SVGNS = 'http://www.w3.org/2000/svg';
  const TOKEN_KEY = 'podvisor.token';
  const TIMELINES = '/apis/timelines.podvisor.io/v1';
  /** Most events kept and shown on the cluster page. */
  const MAX_EVENTS = 500;
  const SHOWN_EVENTS = 50;
  /** Log lines and bytes asked for. */
  const LOG_LINES = 200;
  const LOG_BYTES = 256 * 1024;
  /** Pod page refresh period (ms) while the pod exists. */
  const POD_REFRESH_MS = 2000;

  const state = { token: null, page: null };

  // ---------------------------------------------------------------- DOM helpers

  /** An element with attributes (`class`, `data-*`, `href`, …; `on*` functions become
   * listeners) and children (strings become text nodes). */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }

  /** An SVG element, the same way. */
  function s(tag, attrs, ...children) {
    const el = document.createElementNS(SVGNS, tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }

  function setAttrs(el, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }

  function append(el, children) {
    for (const c of children.flat(Infinity)) {
      if (c === undefined || c === null || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
  }

  function table(headers, rows, attrs) {
    return h('table', attrs,
      h('thead', {}, h('tr', {}, headers.map((t) => h('th', {}, t)))),
      h('tbody', {}, rows));
  }

  function section(id, title, ...body) {
    return h('section', { id }, h('h2', {}, title), body);
  }

  function errorBox(e) {
    return h('p', { class: 'error' }, describe(e));
  }

  // ---------------------------------------------------------------- time

  /** Microseconds since the epoch of an RFC 3339 time (the timeline's six fractional digits
   * kept; Date alone would round them to milliseconds), or null. */
  function micros(t) {
    if (typeof t !== 'string') return null;
    const m = /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/.exec(t);
    if (!m) return null;
    let ms = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]);
    if (m[8] !== 'Z') {
      const sign = m[8][0] === '-' ? -1 : 1;
      ms -= sign * ((+m[8].slice(1, 3)) * 60 + (+m[8].slice(4, 6))) * 60000;
    }
    const frac = ((m[7] || '') + '000000').slice(0, 6);
    return ms * 1000 + (+frac);
  }

  /** `+1.234567s` after `t0` (both microseconds), as `kubectl get timeline` writes it. */
  function relative(t0, t) {
    const d = t - t0;
    const a = Math.abs(d);
    return (d < 0 ? '-' : '+') + Math.floor(a / 1e6) + '.' + String(a % 1e6).padStart(6, '0') + 's';
  }

  /** Kubernetes' HumanDuration (apimachinery/pkg/util/duration), as kubectl's AGE column. */
  function human(seconds) {
    if (seconds < -1) return '<invalid>';
    if (seconds < 0) return '0s';
    if (seconds < 120) return Math.floor(seconds) + 's';
    const minutes = Math.floor(seconds / 60);
    if (minutes < 10) {
      const s2 = Math.floor(seconds % 60);
      return s2 === 0 ? minutes + 'm' : minutes + 'm' + s2 + 's';
    }
    if (minutes < 180) return minutes + 'm';
    const hours = Math.floor(seconds / 3600);
    if (hours < 8) {
      const m2 = minutes % 60;
      return m2 === 0 ? hours + 'h' : hours + 'h' + m2 + 'm';
    }
    if (hours < 48) return hours + 'h';
    if (hours < 24 * 8) {
      const h2 = hours % 24;
      return h2 === 0 ? Math.floor(hours / 24) + 'd' : Math.floor(hours / 24) + 'd' + h2 + 'h';
    }
    if (hours < 24 * 365 * 2) return Math.floor(hours / 24) + 'd';
    if (hours < 24 * 365 * 8) {
      const y = Math.floor(hours / 24 / 365);
      return y + 'y' + Math.floor((hours / 24) % 365) + 'd';
    }
    return Math.floor(hours / 24 / 365) + 'y';
  }

  function age(t) {
    const us = micros(t);
    return us === null ? '<unknown>' : human((Date.now() * 1000 - us) / 1e6);
  }

  // ---------------------------------------------------------------- quantities

  const SUFFIX = {
    n: 1e-9, u: 1e-6, m: 1e-3, '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
    Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4, Pi: 1024 ** 5, Ei: 1024 ** 6,
  };

  /** A resource.Quantity as a number (cores, bytes), or 0 if absent or malformed. */
  function quantity(q) {
    if (q === undefined || q === null) return 0;
    const m = /^([+-]?[0-9.]+)([eE][+-]?[0-9]+)?(n|u|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$/.exec(String(q).trim());
    if (!m) return 0;
    const n = parseFloat(m[1] + (m[2] || ''));
    return Number.isFinite(n) ? n * SUFFIX[m[3] || ''] : 0;
  }

  function cpuText(cores) {
    if (cores === 0) return '0';
    return Number.isInteger(cores) ? String(cores) : Math.round(cores * 1000) + 'm';
  }

  function memText(bytes) {
    const units = ['Ki', 'Mi', 'Gi', 'Ti'];
    let v = bytes;
    let u = '';
    for (const next of units) {
      if (v < 1024) break;
      v /= 1024;
      u = next;
    }
    return (u ? v.toFixed(v < 10 ? 1 : 0) : String(Math.round(v))) + u;
  }

  /** The pod's effective requests for `resource` as the scheduler counts them (upstream's
   * `PodRequests`): pod-level requests if set, else the sum of the app containers and the
   * restartable (sidecar) init containers, at least the largest init container plus the
   * sidecars started before it; plus the overhead. */
  function podRequest(pod, resource) {
    const spec = pod.spec || {};
    const req = (c) => quantity(((c.resources || {}).requests || {})[resource]);
    const overhead = quantity((spec.overhead || {})[resource]);
    const podLevel = ((spec.resources || {}).requests || {})[resource];
    if (podLevel !== undefined) return quantity(podLevel) + overhead;
    let sum = (spec.containers || []).reduce((a, c) => a + req(c), 0);
    let sidecars = 0;
    let initMax = 0;
    for (const c of spec.initContainers || []) {
      if (c.restartPolicy === 'Always') {
        sidecars += req(c);
        sum += req(c);
      } else {
        initMax = Math.max(initMax, req(c) + sidecars);
      }
    }
    return Math.max(sum, initMax) + overhead;
  }

  function terminal(pod) {
    const phase = (pod.status || {}).phase;
    return phase === 'Succeeded' || phase === 'Failed';
  }

  // ---------------------------------------------------------------- API

  class ApiError extends Error {
    constructor(code, status) {
      super((status && status.message) || 'HTTP ' + code);
      this.code = code;
      this.status = status;
    }
  }

  function describe(e) {
    if (e instanceof ApiError) {
      const reason = (e.status && e.status.reason) || '';
      return 'Error from server' + (reason ? ' (' + reason + ')' : '') + ': ' + e.message;
    }
    return String((e && e.message) || e);
  }

  function headers(accept) {
    return { Authorization: 'Bearer ' + state.token, Accept: accept || 'application/json' };
  }

  /** GET (or another method) of an API path; JSON (or text) back; a Status error thrown as
   * ApiError. A 401 logs out. */
  async function api(path, opts) {
    opts = opts || {};
    const r = await fetch(path, {
      method: opts.method || 'GET',
      headers: Object.assign(headers(), opts.body ? { 'Content-Type': 'application/json' } : {}),
      body: opts.body ? JSON.stringify(opts.body) : undefined,
      signal: opts.signal,
      cache: 'no-store',
      credentials: 'omit',
    });
    if (r.status === 401) {
      logout('The server did not accept the token (401 Unauthorized).');
      throw new ApiError(401, { reason: 'Unauthorized', message: 'Unauthorized' });
    }
    if (!r.ok) {
      let st = null;
      try { st = await r.json(); } catch (_) { /* not a Status */ }
      throw new ApiError(r.status, st);
    }
    return opts.text ? r.text() : r.json();
  }

  function sleep(ms, signal) {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      if (signal) signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
    });
  }

  function key(o) {
    const m = o.metadata || {};
    return (m.namespace ? m.namespace + '/' : '') + m.name;
  }

  /** Keeps `items` (key → object) equal to the collection at `path` by list, then watch from
   * the list's resourceVersion (re-listing after a 410 Gone or a broken stream). Calls
   * `changed()` after each list and each batch of watch events, at most every 100 ms.
   * `bound` caps the items kept (the oldest by creation dropped). */
  function live(path, items, changed, signal, opts) {
    opts = opts || {};
    let pending = false;
    const notify = () => {
      if (pending) return;
      pending = true;
      setTimeout(() => { pending = false; if (!signal.aborted) changed(null); }, 100);
    };
    const sep = path.includes('?') ? '&' : '?';
    (async () => {
      while (!signal.aborted) {
        try {
          items.clear();
          let cont = '';
          let rv = '';
          do {
            const page = await api(path + sep + 'limit=500' + (cont ? '&continue=' + encodeURIComponent(cont) : ''), { signal });
            for (const o of page.items || []) items.set(key(o), o);
            cont = (page.metadata || {}).continue || '';
            rv = (page.metadata || {}).resourceVersion || rv;
          } while (cont && !signal.aborted);
          trim(items, opts.bound);
          setLive(path, true);
          changed(null);
          for (;;) {
            const r = await watchOnce(path + sep + 'watch=1&allowWatchBookmarks=true&timeoutSeconds=' +
              (240 + Math.floor(Math.random() * 60)) + '&resourceVersion=' + encodeURIComponent(rv), (ev) => {
              const o = ev.object || {};
              if (ev.type === 'ERROR') return 'relist';
              if (o.metadata && o.metadata.resourceVersion) rv = o.metadata.resourceVersion;
              if (ev.type === 'ADDED' || ev.type === 'MODIFIED') items.set(key(o), o);
              else if (ev.type === 'DELETED') items.delete(key(o));
              else return null;
              trim(items, opts.bound);
              notify();
              return null;
            }, signal);
            if (r === 'relist' || signal.aborted) break;
          }
        } catch (e) {
          if (signal.aborted) return;
          // a refusal is no broken connection
          if (e instanceof ApiError && e.code === 403) liveState.delete(path);
          else setLive(path, false);
          changed(e);
          // a refusal does not pass by itself: ask again less often
          await sleep(e instanceof ApiError && (e.code === 403 || e.code === 404) ? 15000 : 2000, signal);
        }
      }
    })();
  }

  function trim(items, bound) {
    if (!bound || items.size <= bound) return;
    const byAge = [...items.entries()].sort((a, b) => eventTime(a[1]).localeCompare(eventTime(b[1])));
    for (const [k] of byAge.slice(0, items.size - bound)) items.delete(k);
  }

  /** One watch request: calls `onEvent` per line; resolves `'relist'` if it asked to, or
   * when the server ends the stream. */
  async function watchOnce(path, onEvent, signal) {
    const r = await fetch(path, { headers: headers(), signal, cache: 'no-store', credentials: 'omit' });
    if (!r.ok) {
      let st = null;
      try { st = await r.json(); } catch (_) { /* not a Status */ }
      if (r.status === 401) logout('The server did not accept the token (401 Unauthorized).');
      throw new ApiError(r.status, st);
    }
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return 'ended';
      buf += dec.decode(value, { stream: true });
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line) continue;
        let ev;
        try { ev = JSON.parse(line); } catch (_) { continue; }
        if (onEvent(ev) === 'relist') {
          reader.cancel().catch(() => {});
          return 'relist';
        }
      }
      if (buf.length > 16 * 1024 * 1024) throw new Error('watch event too large');
    }
  }

  const liveState = new Map();
  function setLive(path, ok) {
    liveState.set(path, ok);
    const el = document.getElementById('live');
    if (!el) return;
    const down = [...liveState.values()].filter((v) => !v).length;
    el.className = 'live ' + (liveState.size === 0 ? '' : down ? 'down' : 'ok');
    el.textContent = liveState.size === 0 ? '' : down ? 'reconnecting' : 'live';
  }

  // ---------------------------------------------------------------- login

  function takeToken() {
    const m = /^#token=([^&]*)/.exec(location.hash);
    if (m) {
      sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
      // the token leaves the address bar (and the history) at once
      history.replaceState(null, '', location.pathname + location.search + '#/');
    }
    return sessionStorage.getItem(TOKEN_KEY);
  }

  function logout(why) {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = null;
    showLogin(why);
  }

  function showLogin(why) {
    stopPage();
    document.body.dataset.page = 'login';
    document.getElementById('logout').hidden = true;
    document.getElementById('whoami').textContent = '';
    const input = h('textarea', { id: 'token', rows: 3, autocomplete: 'off', spellcheck: 'false', placeholder: 'bearer token' });
    const form = h('form', {
      onsubmit: (ev) => {
        ev.preventDefault();
        const t = input.value.trim();
        if (!t) return;
        sessionStorage.setItem(TOKEN_KEY, t);
        start();
      },
    }, h('p', {}, h('label', { for: 'token' }, 'Token')), input, h('p', {}, h('button', { type: 'submit' }, 'Log in')));
    const main = document.getElementById('main');
    main.replaceChildren(h('div', { class: 'login' },
      h('h1', {}, 'Log in'),
      why ? h('p', { class: 'error' }, why) : null,
      h('p', {}, 'Paste a bearer token: the ', h('code', {}, 'token'), ' of a user in your kubeconfig (',
        h('code', {}, 'kubectl config view --raw -o jsonpath=\'{.users[0].user.token}\''),
        '), or open the address ', h('code', {}, 'podvisor up'), ' prints. The token stays in this tab (session storage); every request is made with it, so RBAC applies as for kubectl.'),
      form));
  }

  async function start() {
    state.token = takeToken();
    if (!state.token) {
      showLogin(null);
      return;
    }
    const out = document.getElementById('logout');
    out.hidden = false;
    out.onclick = () => logout(null);
    try {
      const review = await api('/apis/authentication.k8s.io/v1/selfsubjectreviews', {
        method: 'POST',
        body: { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' },
      });
      const user = ((review.status || {}).userInfo || {}).username || '';
      document.getElementById('whoami').textContent = user;
    } catch (e) {
      if (!state.token) return; // logged out (401)
      document.getElementById('whoami').textContent = '';
    }
    route();
  }

  // ---------------------------------------------------------------- routing

  function stopPage() {
    if (state.page) state.page.abort();
    state.page = null;
    liveState.clear();
    const el = document.getElementById('live');
    if (el) { el.className = 'live'; el.textContent = ''; }
  }

  function route() {
    if (!state.token) return;
    stopPage();
    const ctl = new AbortController();
    state.page = ctl;
    const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
    if (parts[0] === 'pod' && parts.length === 3) podPage(parts[1], parts[2], ctl.signal);
    else clusterPage(ctl.signal);
  }

  // ---------------------------------------------------------------- cluster page

  function nodeStatus(node) {
    const ready = ((node.status || {}).conditions || []).find((c) => c.type === 'Ready');
    let st = !ready ? 'Unknown' : ready.status === 'True' ? 'Ready' : 'NotReady';
    if ((node.spec || {}).unschedulable) st += ',SchedulingDisabled';
    return st;
  }

  function containerCounts(pod) {
    const statuses = (pod.status || {}).containerStatuses || [];
    const total = ((pod.spec || {}).containers || []).length;
    const ready = statuses.filter((c) => c.ready).length;
    const restarts = statuses.reduce((a, c) => a + (c.restartCount || 0), 0);
    return { ready, total, restarts };
  }

  function podLink(ns, name) {
    return h('a', { href: '#/pod/' + encodeURIComponent(ns) + '/' + encodeURIComponent(name) }, name);
  }

  function eventTime(ev) {
    return ev.lastTimestamp || ev.eventTime || (ev.series || {}).lastObservedTime ||
      ev.firstTimestamp || (ev.metadata || {}).creationTimestamp || '';
  }

  function clusterPage(signal) {
    document.body.dataset.page = 'cluster';
    const nodes = new Map();
    const pods = new Map();
    const namespaces = new Map();
    const events = new Map();
    const errors = {};
    const boxes = {
      nodes: h('div'), namespaces: h('div'), pods: h('div'), removed: h('div'), events: h('div'),
    };
    document.getElementById('main').replaceChildren(
      h('h1', {}, 'Cluster'),
      section('nodes', 'Nodes', boxes.nodes),
      section('pods', 'Pods', boxes.pods),
      section('namespaces', 'Namespaces', boxes.namespaces),
      section('removed', 'Removed pods (timelines kept)', boxes.removed),
      section('events', 'Events', boxes.events));

    // each section is rebuilt when its data changed (nodes and namespaces count pods too)
    const renderers = {
      nodes: () => renderNodes(nodes, pods),
      pods: () => renderPods(pods),
      namespaces: () => renderNamespaces(namespaces, pods),
      events: () => renderEvents(events),
    };
    const uses = { nodes: ['nodes'], pods: ['pods', 'nodes', 'namespaces'], namespaces: ['namespaces'], events: ['events'] };
    const render = (names) => {
      if (signal.aborted) return;
      for (const n of names) boxes[n].replaceChildren(errors[n] ? errorBox(errors[n]) : renderers[n]());
    };
    const watcher = (name) => (err) => {
      errors[name] = err;
      render(uses[name]);
    };
    live('/api/v1/nodes', nodes, watcher('nodes'), signal);
    live('/api/v1/pods', pods, watcher('pods'), signal);
    live('/api/v1/namespaces', namespaces, watcher('namespaces'), signal);
    live('/api/v1/events', events, watcher('events'), signal, { bound: MAX_EVENTS });
    // ages move on
    (async () => {
      while (!signal.aborted) {
        await sleep(10000, signal);
        render(Object.keys(renderers));
      }
    })();
    // timelines of pods that are gone: a bounded list, every 15 s
    (async () => {
      while (!signal.aborted) {
        try {
          const list = await api(TIMELINES + '/timelines?limit=200', { signal });
          boxes.removed.replaceChildren(renderRemoved(list.items || []));
        } catch (e) {
          if (signal.aborted) return;
          boxes.removed.replaceChildren(errorBox(e));
        }
        await sleep(15000, signal);
      }
    })();
  }

  function renderNodes(nodes, pods) {
    const rows = [...nodes.values()].sort((a, b) => a.metadata.name.localeCompare(b.metadata.name)).map((n) => {
      const name = n.metadata.name;
      const alloc = (n.status || {}).allocatable || {};
      const on = [...pods.values()].filter((p) => (p.spec || {}).nodeName === name && !terminal(p));
      const cpuReq = on.reduce((a, p) => a + podRequest(p, 'cpu'), 0);
      const memReq = on.reduce((a, p) => a + podRequest(p, 'memory'), 0);
      const cpuAlloc = quantity(alloc.cpu);
      const memAlloc = quantity(alloc.memory);
      const st = nodeStatus(n);
      const pct = (a, b) => (b > 0 ? ' (' + Math.round((100 * a) / b) + '%)' : '');
      const info = (n.status || {}).nodeInfo || {};
      return h('tr', { 'data-node': name, 'data-status': st, 'data-pods': on.length },
        h('td', {}, name),
        h('td', { class: 's-' + st.split(',')[0] }, st),
        h('td', { class: 'num' }, on.length + ' / ' + (alloc.pods || '?')),
        h('td', {}, h('meter', { min: 0, max: cpuAlloc || 1, value: cpuReq }), cpuText(cpuReq) + ' / ' + cpuText(cpuAlloc) + pct(cpuReq, cpuAlloc)),
        h('td', {}, h('meter', { min: 0, max: memAlloc || 1, value: memReq }), memText(memReq) + ' / ' + memText(memAlloc) + pct(memReq, memAlloc)),
        h('td', { class: 'mono' }, ((n.status || {}).addresses || []).filter((a) => a.type === 'InternalIP').map((a) => a.address).join(', ')),
        h('td', {}, info.kubeletVersion || ''),
        h('td', {}, age(n.metadata.creationTimestamp)));
    });
    if (rows.length === 0) return h('p', { class: 'muted' }, 'No nodes.');
    return table(['Name', 'Status', 'Pods', 'CPU requests / allocatable', 'Memory requests / allocatable', 'Internal IP', 'Version', 'Age'], rows, { id: 'node-table' });
  }

  const PHASES = ['Pending', 'Running', 'Succeeded', 'Failed', 'Unknown'];

  function renderPods(pods) {
    const all = [...pods.values()];
    const count = (ph) => all.filter((p) => ((p.status || {}).phase || 'Pending') === ph).length;
    const chips = h('div', { class: 'chips', id: 'phase-counts' },
      PHASES.map((ph) => h('span', { class: 'chip', 'data-phase': ph, 'data-count': count(ph) }, h('span', { class: 's-' + ph }, ph), h('b', {}, String(count(ph))))));
    const rows = all.sort((a, b) => key(a).localeCompare(key(b))).map((p) => {
      const m = p.metadata;
      const phase = (p.status || {}).phase || 'Pending';
      const c = containerCounts(p);
      return h('tr', { 'data-pod': m.namespace + '/' + m.name, 'data-phase': phase, 'data-terminating': m.deletionTimestamp ? 'true' : null },
        h('td', {}, m.namespace),
        h('td', {}, podLink(m.namespace, m.name)),
        h('td', { class: 'num' }, c.ready + '/' + c.total),
        h('td', {}, h('span', { class: 's-' + phase }, phase), m.deletionTimestamp ? h('span', { class: 'badge' }, 'Terminating') : null),
        h('td', { class: 'num' }, String(c.restarts)),
        h('td', {}, (p.spec || {}).nodeName || '<none>'),
        h('td', { class: 'mono' }, (p.status || {}).podIP || '<none>'),
        h('td', {}, age(m.creationTimestamp)));
    });
    return h('div', {}, chips,
      rows.length === 0 ? h('p', { class: 'muted' }, 'No pods.')
        : table(['Namespace', 'Name', 'Ready', 'Phase', 'Restarts', 'Node', 'IP', 'Age'], rows, { id: 'pod-table' }));
  }

  function renderNamespaces(namespaces, pods) {
    const rows = [...namespaces.values()].sort((a, b) => a.metadata.name.localeCompare(b.metadata.name)).map((n) => {
      const phase = (n.status || {}).phase || 'Active';
      const count = [...pods.values()].filter((p) => p.metadata.namespace === n.metadata.name).length;
      return h('tr', { 'data-namespace': n.metadata.name },
        h('td', {}, n.metadata.name),
        h('td', { class: 's-' + phase }, phase),
        h('td', { class: 'num' }, String(count)),
        h('td', {}, age(n.metadata.creationTimestamp)));
    });
    return table(['Name', 'Status', 'Pods', 'Age'], rows, { id: 'namespace-table' });
  }

  function renderRemoved(timelines) {
    const gone = timelines.filter((t) => t.removedAt)
      .sort((a, b) => String(b.removedAt).localeCompare(String(a.removedAt))).slice(0, 50);
    if (gone.length === 0) return h('p', { class: 'muted' }, 'No timelines of removed pods.');
    const rows = gone.map((t) => {
      const ns = t.metadata.namespace;
      const pod = t.pod || {};
      return h('tr', { 'data-removed-pod': ns + '/' + pod.name, 'data-uid': pod.uid },
        h('td', {}, ns),
        h('td', {}, h('a', { href: '#/pod/' + encodeURIComponent(ns) + '/' + encodeURIComponent(pod.uid || '') }, pod.name || '')),
        h('td', { class: 'mono' }, pod.uid || ''),
        h('td', {}, pod.nodeName || '<none>'),
        h('td', { class: 'num' }, String((t.entries || []).length)),
        h('td', {}, age(t.removedAt) + ' ago'));
    });
    return table(['Namespace', 'Pod', 'UID', 'Node', 'Steps', 'Removed'], rows, { id: 'removed-table' });
  }

  function renderEvents(events) {
    const list = [...events.values()].sort((a, b) => eventTime(b).localeCompare(eventTime(a))).slice(0, SHOWN_EVENTS);
    if (list.length === 0) return h('p', { class: 'muted' }, 'No events.');
    return table(['Last seen', 'Type', 'Reason', 'Object', 'Message'], list.map((e) => {
      const o = e.involvedObject || e.regarding || {};
      const obj = (o.kind || '').toLowerCase() + '/' + (o.name || '');
      return h('tr', { 'data-reason': e.reason || '' },
        h('td', {}, age(eventTime(e))),
        h('td', { class: 's-' + (e.type || '') }, e.type || ''),
        h('td', {}, e.reason || ''),
        h('td', {}, o.kind === 'Pod' && o.namespace ? h('a', { href: '#/pod/' + encodeURIComponent(o.namespace) + '/' + encodeURIComponent(o.name) }, obj) : obj),
        h('td', { class: 'msg' }, (e.message || e.note || '') + ((e.count || 0) > 1 ? ' (x' + e.count + ')' : '')));
    }), { id: 'event-table' });
  }

  // ---------------------------------------------------------------- pod page

  function podPage(ns, name, signal) {
    document.body.dataset.page = 'pod';
    delete document.body.dataset.podState;
    const title = h('h1', {}, 'Pod ', h('span', { class: 'mono' }, ns + '/' + name));
    const boxes = {
      notice: h('div'), summary: h('div'), conditions: h('div'), containers: h('div'),
      timeline: h('div'), logs: h('div'), events: h('div'),
    };
    document.getElementById('main').replaceChildren(title, boxes.notice,
      section('summary', 'Summary', boxes.summary),
      section('conditions', 'Conditions', boxes.conditions),
      section('containers', 'Containers', boxes.containers),
      section('timeline', 'Timeline', boxes.timeline),
      section('logs', 'Logs', boxes.logs),
      section('pod-events', 'Events', boxes.events));
    const view = { timelineVersion: null, logContainer: null, chart: null };
    (async () => {
      let seenPod = false;
      while (!signal.aborted) {
        let pod = null;
        let gone = false;
        try {
          pod = await api('/api/v1/namespaces/' + encodeURIComponent(ns) + '/pods/' + encodeURIComponent(name), { signal });
          seenPod = true;
        } catch (e) {
          if (signal.aborted) return;
          if (e.code === 404) gone = true;
          else boxes.notice.replaceChildren(errorBox(e));
        }
        // the timeline: by the pod's name (the newest pod of that name) or by UID
        let tl = null;
        try {
          tl = await api(TIMELINES + '/namespaces/' + encodeURIComponent(ns) + '/timelines/' +
            encodeURIComponent(pod ? pod.metadata.uid : name), { signal });
        } catch (e) {
          if (signal.aborted) return;
          if (e.code !== 404) boxes.timeline.replaceChildren(errorBox(e));
        }
        if (signal.aborted) return;
        if (gone && tl && tl.pod && tl.pod.name && tl.pod.name !== name) {
          title.replaceChildren('Pod ', h('span', { class: 'mono' }, ns + '/' + tl.pod.name));
        }
        document.body.dataset.podState = pod ? 'present' : gone ? 'removed' : 'unknown';
        if (pod) {
          boxes.notice.replaceChildren(pod.metadata.deletionTimestamp
            ? h('p', { class: 'notice' }, 'Terminating: deletion requested, grace period ' +
              pod.metadata.deletionGracePeriodSeconds + 's (deadline ' + pod.metadata.deletionTimestamp + ').')
            : '');
          boxes.summary.replaceChildren(renderSummary(pod));
          boxes.conditions.replaceChildren(renderConditions(pod));
          boxes.containers.replaceChildren(renderContainers(pod));
        } else if (gone) {
          const removedAt = tl && tl.removedAt;
          boxes.notice.replaceChildren(h('p', { class: 'notice', id: 'removed-notice' },
            'This pod no longer exists' + (removedAt ? ' (removed ' + removedAt + ')' : '') +
            '. What is still kept: its timeline' + (tl ? '' : ' (none found)') +
            ' and its events until they expire; its logs went with it.'));
          if (!seenPod) {
            boxes.summary.replaceChildren(tl ? renderTimelineSummary(tl) : h('p', { class: 'muted' }, 'Not found.'));
            boxes.conditions.replaceChildren(h('p', { class: 'muted' }, 'Gone with the pod.'));
            boxes.containers.replaceChildren(h('p', { class: 'muted' }, 'Gone with the pod (the timeline below has every container step).'));
          }
        }
        if (tl) {
          const version = tl.metadata.resourceVersion + (pod ? '' : '/removed');
          if (version !== view.timelineVersion || (pod && !tl.removedAt)) {
            view.timelineVersion = version;
            boxes.timeline.replaceChildren(renderTimeline(tl, pod, view));
          }
        } else if (!boxes.timeline.firstChild) {
          boxes.timeline.replaceChildren(h('p', { class: 'muted' }, 'No timeline (yet): the first entries are written within a second of the pod\'s first steps.'));
        }
        const uid = pod ? pod.metadata.uid : tl && tl.pod ? tl.pod.uid : null;
        if (pod) await renderLogs(boxes.logs, ns, pod, view, signal);
        else if (gone) boxes.logs.replaceChildren(h('p', { class: 'muted' }, 'The pod is gone; its logs went with it.'));
        if (uid) {
          try {
            const evs = await api('/api/v1/namespaces/' + encodeURIComponent(ns) + '/events?fieldSelector=' +
              encodeURIComponent('involvedObject.uid=' + uid), { signal });
            boxes.events.replaceChildren(renderEvents(new Map((evs.items || []).map((e) => [key(e), e]))));
          } catch (e) {
            if (signal.aborted) return;
            boxes.events.replaceChildren(errorBox(e));
          }
        }
        // a removed pod with a complete timeline changes no more (until pruned)
        await sleep(gone && tl && tl.removedAt ? 5000 : POD_REFRESH_MS, signal);
      }
    })();
  }

  function summary(pairs) {
    return h('dl', { class: 'summary' }, pairs.filter((p) => p[1] !== undefined && p[1] !== null && p[1] !== '')
      .map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
  }

  function renderSummary(pod) {
    const m = pod.metadata;
    const spec = pod.spec || {};
    const st = pod.status || {};
    const labels = Object.entries(m.labels || {}).map(([k, v]) => k + '=' + v).join(', ');
    return summary([
      ['Name', m.name],
      ['Namespace', m.namespace],
      ['UID', h('span', { class: 'mono' }, m.uid)],
      ['Phase', h('span', { class: 's-' + (st.phase || 'Pending'), id: 'pod-phase' }, st.phase || 'Pending')],
      ['Node', spec.nodeName || '<none>'],
      ['IP', st.podIP || '<none>'],
      ['Created', m.creationTimestamp + ' (' + age(m.creationTimestamp) + ' ago)'],
      ['Start time', st.startTime],
      ['Labels', labels || '<none>'],
      ['Service account', spec.serviceAccountName],
      ['Restart policy', spec.restartPolicy],
      ['Termination grace period', spec.terminationGracePeriodSeconds !== undefined ? spec.terminationGracePeriodSeconds + 's' : undefined],
      ['QoS class', st.qosClass],
      ['Priority', spec.priority !== undefined ? String(spec.priority) : undefined],
      ['Runtime class', spec.runtimeClassName],
      ['Reason', st.reason],
      ['Message', st.message],
    ]);
  }

  function renderTimelineSummary(tl) {
    const pod = tl.pod || {};
    return summary([
      ['Name', pod.name],
      ['Namespace', tl.metadata.namespace],
      ['UID', h('span', { class: 'mono' }, pod.uid || tl.metadata.name)],
      ['Node', pod.nodeName || '<none>'],
      ['Removed', tl.removedAt],
    ]);
  }

  function renderConditions(pod) {
    const cs = (pod.status || {}).conditions || [];
    if (cs.length === 0) return h('p', { class: 'muted' }, 'None.');
    return table(['Type', 'Status', 'Last transition', 'Reason', 'Message'], cs.map((c) =>
      h('tr', { 'data-condition': c.type, 'data-status': c.status },
        h('td', {}, c.type), h('td', { class: 's-' + c.status }, c.status),
        h('td', {}, c.lastTransitionTime || ''), h('td', {}, c.reason || ''), h('td', { class: 'msg' }, c.message || ''))),
    { id: 'condition-table' });
  }

  function stateText(st) {
    if (!st) return ['Waiting', ''];
    if (st.running) return ['Running', 'Started: ' + (st.running.startedAt || '')];
    if (st.terminated) {
      const t = st.terminated;
      return ['Terminated', (t.reason || '') + ' (exit code ' + t.exitCode + (t.signal ? ', signal ' + t.signal : '') + ')' +
        (t.finishedAt ? ' at ' + t.finishedAt : '')];
    }
    if (st.waiting) return ['Waiting', st.waiting.reason || ''];
    return ['Waiting', ''];
  }

  function probeText(c) {
    const kinds = [['startup', c.startupProbe], ['liveness', c.livenessProbe], ['readiness', c.readinessProbe]];
    return kinds.filter((k) => k[1]).map(([n, p]) => {
      const how = p.exec ? 'exec' : p.httpGet ? 'http-get :' + p.httpGet.port + (p.httpGet.path || '')
        : p.tcpSocket ? 'tcp-socket :' + p.tcpSocket.port : p.grpc ? 'grpc :' + p.grpc.port : '?';
      return n + ': ' + how + ' period=' + (p.periodSeconds || 10) + 's';
    }).join('; ');
  }

  function resourcesText(c, which) {
    const r = (c.resources || {})[which] || {};
    return Object.entries(r).map(([k, v]) => k + '=' + v).join(' ') || '';
  }

  function renderContainers(pod) {
    const spec = pod.spec || {};
    const st = pod.status || {};
    const rows = [];
    const add = (kind, list, statuses) => {
      for (const c of list || []) {
        const cs = (statuses || []).find((x) => x.name === c.name) || {};
        const [stateName, detail] = stateText(cs.state);
        const last = cs.lastState && cs.lastState.terminated ? stateText(cs.lastState) : null;
        rows.push(h('tr', { 'data-container': c.name, 'data-state': stateName },
          h('td', {}, c.name, kind ? h('span', { class: 'badge' }, kind) : null),
          h('td', { class: 'mono' }, c.image || ''),
          h('td', {}, h('span', { class: 's-' + stateName }, stateName), detail ? ' ' + detail : '',
            last ? h('div', { class: 'muted' }, 'Last state: ' + last[0] + ' ' + last[1]) : null),
          h('td', { class: cs.ready ? 's-True' : 's-False' }, cs.ready ? 'True' : 'False'),
          h('td', { class: 'num' }, String(cs.restartCount || 0)),
          h('td', { class: 'mono' }, resourcesText(c, 'requests')),
          h('td', { class: 'mono' }, resourcesText(c, 'limits')),
          h('td', {}, probeText(c))));
      }
    };
    add('init', (spec.initContainers || []).filter((c) => c.restartPolicy !== 'Always'), st.initContainerStatuses);
    add('sidecar', (spec.initContainers || []).filter((c) => c.restartPolicy === 'Always'), st.initContainerStatuses);
    add('', spec.containers, st.containerStatuses);
    add('ephemeral', spec.ephemeralContainers, st.ephemeralContainerStatuses);
    return table(['Name', 'Image', 'State', 'Ready', 'Restarts', 'Requests', 'Limits', 'Probes'], rows, { id: 'container-table' });
  }

  async function renderLogs(box, ns, pod, view, signal) {
    const names = [...(pod.spec.initContainers || []), ...(pod.spec.containers || [])].map((c) => c.name);
    if (!view.logContainer || !names.includes(view.logContainer)) view.logContainer = (pod.spec.containers || [{}])[0].name;
    const pick = h('div', { class: 'toolbar' }, names.map((n) => h('button', {
      type: 'button', class: n === view.logContainer ? 'on' : '',
      onclick: () => { view.logContainer = n; renderLogs(box, ns, pod, view, signal); },
    }, n)));
    let text;
    try {
      text = await api('/api/v1/namespaces/' + encodeURIComponent(ns) + '/pods/' + encodeURIComponent(pod.metadata.name) +
        '/log?container=' + encodeURIComponent(view.logContainer) + '&tailLines=' + LOG_LINES + '&limitBytes=' + LOG_BYTES,
      { signal, text: true });
    } catch (e) {
      if (signal.aborted) return;
      box.replaceChildren(pick, errorBox(e));
      return;
    }
    if (signal.aborted) return;
    const old = box.querySelector('pre.logs');
    const atEnd = !old || old.scrollTop + old.clientHeight >= old.scrollHeight - 4;
    const pre = h('pre', { class: 'logs', id: 'log-text' }, text || '(no output)');
    box.replaceChildren(pick, h('p', { class: 'muted' }, 'The last ' + LOG_LINES + ' lines of ' + view.logContainer + ', refreshed every ' + POD_REFRESH_MS / 1000 + ' s.'), pre);
    if (atEnd) pre.scrollTop = pre.scrollHeight;
    else if (old) pre.scrollTop = old.scrollTop;
  }

  // ---------------------------------------------------------------- the Gantt chart

  const COLORS = {
    Pending: '#e3a008', Running: '#2e8540', Succeeded: '#3b8fd9', Failed: '#c0392b', Unknown: '#8a949e',
    Waiting: '#e3a008', Terminated: '#8a949e', TerminatedError: '#c0392b',
    Terminating: '#8e44ad', preStop: '#2471a3', Ready: '#145a32',
    Success: '#1e7b34', Failure: '#c0392b', ProbeUnknown: '#8a949e',
    marker: '#5b2c6f', deadline: '#c0392b', axis: '#8a949e', text: '#1d2329',
  };

  /** The termination steps marked on the chart, with their labels. */
  const MARKS = {
    DeleteRequested: 'delete request',
    EndpointsDrained: 'endpoints drained',
    PreStopStarted: 'preStop',
    StopSignal: 'stop signal',
    GraceDeadline: 'grace deadline',
    Killed: 'SIGKILL',
    Removed: 'removed',
  };

  /** What the chart draws, computed from the timeline's entries (and the pod, for the
   * container order and for "now" while it runs): lanes of bars, probe ticks, marks. */
  function ganttModel(tl, pod) {
    const es = (tl.entries || []).map((e) => Object.assign({}, e, { us: micros(e.time), lastUs: micros(e.lastTime) }))
      .filter((e) => e.us !== null);
    if (es.length === 0) return null;
    const t0 = es[0].us;
    let end = Math.max(...es.map((e) => Math.max(e.us, e.lastUs || 0)));
    const removed = es.find((e) => e.step === 'Removed');
    const running = !removed;
    const marks = [];
    const del = es.find((e) => e.step === 'DeleteRequested');
    // every termination step (a restart's stop too); the container named when there are several
    const several = new Set(es.filter((e) => e.container).map((e) => e.container)).size > 1;
    for (const e of es) {
      if (!MARKS[e.step]) continue;
      const grace = e.step === 'DeleteRequested' && (e.details || {}).grace !== undefined ? ' (' + e.details.grace + 's)' : '';
      marks.push({ step: e.step, us: e.us, label: MARKS[e.step] + grace + (several && e.container ? ' (' + e.container + ')' : ''), entry: e });
    }
    // the grace deadline: the one the kubelet enforced (its SIGKILL entry names it, or says
    // how late it was), else the delete request plus the grace period
    if (del) {
      const killed = es.find((e) => e.step === 'Killed' && e.us >= del.us);
      const late = killed ? parseInt((killed.details || {}).lateMs, 10) : NaN;
      const enforced = killed ? micros((killed.details || {}).deadline) : null;
      const grace = parseInt((del.details || {}).grace, 10);
      let deadline = null;
      let how = '';
      if (enforced !== null) {
        deadline = enforced;
        how = 'enforced by the kubelet; SIGKILL ' + (Number.isFinite(late) ? late + ' ms ' : '') + 'after it';
      } else if (killed && Number.isFinite(late)) {
        deadline = killed.us - late * 1000;
        how = 'SIGKILL ' + late + ' ms after it';
      } else if (Number.isFinite(grace)) {
        deadline = del.us + grace * 1e6;
        how = 'delete request + ' + grace + ' s';
      }
      if (deadline !== null) {
        marks.push({ step: 'GraceDeadline', us: deadline, label: MARKS.GraceDeadline, entry: { step: 'GraceDeadline', message: how } });
        end = Math.max(end, deadline);
      }
    }
    if (running && pod) end = Math.max(end, Date.now() * 1000);
    const stop = removed ? removed.us : end;
    const lanes = [];
    // the pod: its phases, as the kubelet's status writes published them
    const podBars = [];
    let cur = { state: 'Pending', start: (es.find((e) => e.step === 'Created') || es[0]).us };
    for (const e of es) {
      const phase = e.step === 'StatusWritten' ? (e.details || {}).phase : null;
      if (phase && phase !== cur.state) {
        podBars.push({ state: cur.state, start: cur.start, end: e.us });
        cur = { state: phase, start: e.us };
      }
    }
    podBars.push({ state: cur.state, start: cur.start, end: stop, open: !removed });
    // the Ready condition, as a thin bar under the phases
    let readySince = null;
    for (const e of es) {
      if (e.step !== 'ReadyChanged') continue;
      const ready = (e.details || {}).ready === 'True';
      if (ready && readySince === null) readySince = e.us;
      if (!ready && readySince !== null) {
        podBars.push({ state: 'Ready', start: readySince, end: e.us });
        readySince = null;
      }
    }
    if (readySince !== null) podBars.push({ state: 'Ready', start: readySince, end: stop, open: !removed });
    const delBars = [];
    if (del) delBars.push({ state: 'Terminating', start: del.us, end: stop, open: !removed });
    lanes.push({ name: 'pod', label: 'pod phase', bars: podBars.filter((b) => b.end >= b.start), ticks: [] });
    // containers: in the pod's order if known, else as they appear
    const names = [];
    if (pod) {
      for (const c of [...(pod.spec.initContainers || []), ...(pod.spec.containers || [])]) names.push(c.name);
    }
    for (const e of es) if (e.container && !names.includes(e.container)) names.push(e.container);
    for (const name of names) {
      const mine = es.filter((e) => e.container === name);
      if (mine.length === 0) continue;
      const bars = [];
      let c = null; // { state, start, reason }
      const open = (state, us, reason) => {
        if (c && c.state === state) return;
        if (c) bars.push({ state: c.state, start: c.start, end: us, reason: c.reason });
        c = { state, start: us, reason };
      };
      const ticks = [];
      let preStop = null;
      for (const e of mine) {
        const d = e.details || {};
        switch (e.step) {
          case 'ImagePulling': case 'ImagePulled': case 'ContainerCreated':
            if (!c || c.state !== 'Running') open('Waiting', e.us, c && c.state === 'Terminated' ? 'restarting' : 'ContainerCreating');
            break;
          case 'BackOff':
            if (!c || c.state !== 'Running') open('Waiting', e.us, 'CrashLoopBackOff');
            break;
          case 'ContainerStarted':
            open('Running', e.us, '');
            break;
          case 'ContainerExited':
            open('Terminated', e.us, 'exit code ' + (d.exitCode || '?') + (d.signal ? ', signal ' + d.signal : '') + (d.reason ? ' (' + d.reason + ')' : ''));
            c.error = d.exitCode !== undefined && d.exitCode !== '0';
            break;
          case 'ProbeResult':
            ticks.push({ us: e.us, probe: d.probe || '', result: d.result || '', message: e.message || '' });
            break;
          case 'PreStopStarted':
            preStop = { state: 'preStop', start: e.us, end: stop, open: true };
            break;
          case 'PreStopFinished':
            if (preStop) { preStop.end = e.us; preStop.open = false; preStop.reason = d.outcome || ''; bars.push(preStop); preStop = null; }
            break;
          default:
        }
      }
      if (preStop) bars.push(preStop);
      if (c) bars.push({ state: c.state, start: c.start, end: stop, reason: c.reason, error: c.error, open: !removed });
      lanes.push({ name, label: name, bars: bars.filter((b) => b.end >= b.start), ticks });
    }
    if (del) lanes.push({ name: 'deletion', label: 'deletion', bars: delBars, ticks: [] });
    return { t0, t1: Math.max(end, t0 + 1), lanes, marks, entries: es };
  }

  /** A "nice" axis step (1, 2, 5 × 10^n µs) giving about `n` ticks over `span` µs. */
  function niceStep(span, n) {
    const raw = span / n;
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
    return 10 * p;
  }

  /** `+1.5s`: an axis label, with as many decimals as the step needs. */
  function secondsLabel(us, step) {
    const decimals = step >= 1e6 ? 0 : step >= 1e5 ? 1 : step >= 1e4 ? 2 : 3;
    return '+' + (us / 1e6).toFixed(decimals) + 's';
  }

  /** The chart as an SVG element: self-contained (presentation attributes only, no CSS),
   * so that the same element downloaded is the bug report's picture. Every bar, tick and
   * mark carries its times (`data-*-us`, microseconds since the epoch) and the axis its
   * mapping (`data-t0-us`, `data-x0`, `data-px-per-us`). */
  function ganttSvg(model, title) {
    const W = 1100;
    const X0 = 150;
    const X1 = W - 24;
    const LANE = 30;
    const BAR = 16;
    const { t0, t1 } = model;
    const scale = (X1 - X0) / (t1 - t0);
    const x = (us) => (X0 + (us - t0) * scale).toFixed(3);
    // mark labels: staggered in rows so that close steps stay readable
    const marks = [...model.marks].sort((a, b) => a.us - b.us);
    const rowEnds = [];
    for (const m of marks) {
      const px = X0 + (m.us - t0) * scale;
      const width = m.label.length * 6.2 + 8;
      // near the right edge the label goes left of its line
      m.left = px + width > W - 4;
      const from = m.left ? px - width : px;
      let row = rowEnds.findIndex((e) => e <= from);
      if (row < 0) { row = rowEnds.length; rowEnds.push(0); }
      rowEnds[row] = m.left ? px + 2 : px + width;
      m.row = row;
    }
    const TOP = 30 + rowEnds.length * 14;
    const AXIS = TOP + 16;
    const lanesTop = AXIS + 8;
    const H = lanesTop + model.lanes.length * LANE + 40;
    const svg = s('svg', {
      xmlns: SVGNS, id: 'gantt', viewBox: '0 0 ' + W + ' ' + H, width: W, height: H,
      'font-family': 'DejaVu Sans, Arial, sans-serif', 'font-size': 11,
      'data-t0-us': t0, 'data-t1-us': t1, 'data-x0': X0, 'data-x1': X1, 'data-px-per-us': scale,
    });
    svg.append(s('rect', { x: 0, y: 0, width: W, height: H, fill: '#ffffff' }));
    svg.append(s('text', { x: 8, y: 16, 'font-size': 13, 'font-weight': 'bold', fill: COLORS.text }, title));
    svg.append(s('text', { x: W - 8, y: 16, 'text-anchor': 'end', fill: COLORS.axis },
      't0 = ' + new Date(t0 / 1000).toISOString().replace(/\.\d+Z$/, '.' + String(t0 % 1e6).padStart(6, '0') + 'Z')));
    // axis
    const step = niceStep(t1 - t0, 10);
    const axis = s('g', { class: 'axis' });
    for (let t = 0; t <= t1 - t0 + 1; t += step) {
      const px = x(t0 + t);
      axis.append(s('line', { x1: px, x2: px, y1: AXIS, y2: H - 32, stroke: '#e3e7eb', 'stroke-width': 1 }));
      axis.append(s('text', { x: px, y: AXIS - 4, 'text-anchor': 'middle', fill: COLORS.axis }, secondsLabel(t, step)));
    }
    svg.append(axis);
    // lanes
    model.lanes.forEach((lane, i) => {
      const y = lanesTop + i * LANE;
      const g = s('g', { class: 'lane', 'data-lane': lane.name });
      g.append(s('text', { x: X0 - 8, y: y + LANE / 2 + 4, 'text-anchor': 'end', fill: COLORS.text }, lane.label));
      g.append(s('line', { x1: X0, x2: X1, y1: y + LANE - 1, y2: y + LANE - 1, stroke: '#eef0f2' }));
      for (const b of lane.bars) {
        const color = b.state === 'Terminated' && b.error ? COLORS.TerminatedError : COLORS[b.state] || COLORS.Unknown;
        const thin = b.state === 'preStop' || b.state === 'Ready';
        const by = thin ? y + LANE - 8 : y + (LANE - BAR) / 2;
        const rect = s('rect', {
          class: 'bar', x: x(b.start), y: by, width: Math.max(0, (b.end - b.start) * scale).toFixed(3), height: thin ? 5 : BAR,
          fill: color, 'fill-opacity': b.state === 'Terminated' ? 0.45 : 0.85, rx: 2,
          'data-lane': lane.name, 'data-state': b.state, 'data-start-us': b.start, 'data-end-us': b.end,
          'data-open': b.open ? 'true' : null,
        }, s('title', {}, lane.label + ': ' + b.state + (b.reason ? ' — ' + b.reason : '') + '\n' + relative(t0, b.start) + ' → ' +
          (b.open ? 'now ' : '') + relative(t0, b.end) + ' (' + ((b.end - b.start) / 1e6).toFixed(3) + ' s)'));
        g.append(rect);
        if (!thin && (b.end - b.start) * scale > b.state.length * 6.5 + 6) {
          g.append(s('text', { x: (X0 + (b.start - t0) * scale + 4).toFixed(3), y: by + BAR - 4, fill: '#ffffff', 'pointer-events': 'none' }, b.state));
        }
      }
      for (const t of lane.ticks) {
        const color = t.result === 'Success' ? COLORS.Success : t.result === 'Failure' ? COLORS.Failure : COLORS.ProbeUnknown;
        g.append(s('line', {
          class: 'probe', x1: x(t.us), x2: x(t.us), y1: y + 1, y2: y + LANE - 3, stroke: color, 'stroke-width': 2,
          'data-lane': lane.name, 'data-time-us': t.us, 'data-probe': t.probe, 'data-result': t.result,
        }, s('title', {}, t.probe + ' probe: ' + t.result + ' at ' + relative(t0, t.us) + (t.message ? '\n' + t.message : ''))));
      }
      svg.append(g);
    });
    // termination marks: a line over every lane, the label on top
    const mg = s('g', { class: 'marks' });
    for (const m of marks) {
      const px = x(m.us);
      const color = m.step === 'GraceDeadline' || m.step === 'Killed' ? COLORS.deadline : COLORS.marker;
      mg.append(s('line', {
        class: 'marker', x1: px, x2: px, y1: 22 + m.row * 14 + 3, y2: H - 32, stroke: color, 'stroke-width': 1.2,
        'stroke-dasharray': m.step === 'GraceDeadline' ? '5 3' : '2 2', 'data-step': m.step, 'data-time-us': m.us,
      }, s('title', {}, m.label + ' at ' + relative(model.t0, m.us) + (m.entry.message ? '\n' + m.entry.message : ''))));
      mg.append(s('text', {
        x: (m.left ? +px - 3 : +px + 3).toFixed(3), y: 30 + m.row * 14, fill: color, 'text-anchor': m.left ? 'end' : null,
      }, m.label));
    }
    svg.append(mg);
    // legend
    const legend = s('g', { class: 'legend' });
    let lx = X0;
    for (const [label, color] of [['Pending / Waiting', COLORS.Pending], ['Running', COLORS.Running], ['Terminated', COLORS.Terminated],
      ['Ready', COLORS.Ready], ['Terminating', COLORS.Terminating], ['preStop', COLORS.preStop], ['probe Success', COLORS.Success], ['probe Failure', COLORS.Failure]]) {
      legend.append(s('rect', { x: lx, y: H - 22, width: 10, height: 10, fill: color }));
      legend.append(s('text', { x: lx + 14, y: H - 13, fill: COLORS.axis }, label));
      lx += 24 + label.length * 6.2;
    }
    svg.append(legend);
    return svg;
  }

  function renderTimeline(tl, pod, view) {
    const podInfo = tl.pod || {};
    const ns = tl.metadata.namespace;
    const model = ganttModel(tl, pod);
    if (!model) return h('p', { class: 'muted' }, 'The timeline has no entries yet.');
    const title = 'Pod ' + ns + '/' + (podInfo.name || '') + ' (uid ' + (podInfo.uid || tl.metadata.name) + ')' +
      (podInfo.nodeName ? ' on ' + podInfo.nodeName : '') + (tl.removedAt ? ', removed' : '');
    const svg = ganttSvg(model, title);
    svg.setAttribute('data-timeline-version', tl.metadata.resourceVersion || '');
    if (tl.removedAt) svg.setAttribute('data-removed', 'true');
    view.chart = svg;
    const base = 'timeline-' + ns + '-' + (podInfo.name || 'pod') + '-' + String(podInfo.uid || tl.metadata.name).slice(0, 8);
    const tools = h('div', { class: 'toolbar' },
      h('button', { type: 'button', id: 'download-svg', onclick: () => download(svgText(svg), 'image/svg+xml', base + '.svg') }, 'Download SVG'),
      h('button', { type: 'button', id: 'download-png', onclick: () => downloadPng(svg, base + '.png') }, 'Download PNG'),
      h('span', { class: 'muted' }, (model.entries.length) + ' steps' + (tl.droppedEntries ? ', ' + tl.droppedEntries + ' dropped' : '') +
        ', ' + (tl.writes || 0) + ' store writes' + (tl.removedAt ? '; pod removed ' + tl.removedAt : '')));
    const rows = model.entries.map((e) => h('tr', { 'data-step': e.step, 'data-time-us': e.us },
      h('td', { class: 'mono' }, relative(model.t0, e.us)),
      h('td', {}, e.component || ''),
      h('td', {}, e.step),
      h('td', {}, e.container || ''),
      h('td', { class: 'mono' }, Object.entries(e.details || {}).map(([k, v]) => k + '=' + v).join(' ')),
      h('td', { class: 'msg' }, (e.message || '') + ((e.count || 0) > 1 ? ' (x' + e.count + ')' : ''))));
    return h('div', {},
      tools,
      h('div', { class: 'gantt-box' }, svg),
      h('h3', {}, 'Steps'),
      table(['Time', 'Component', 'Step', 'Container', 'Details', 'Message'], rows, { id: 'step-table' }));
  }

  function svgText(svg) {
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + new XMLSerializer().serializeToString(svg) + '\n';
  }

  function download(data, type, filename) {
    const url = URL.createObjectURL(data instanceof Blob ? data : new Blob([data], { type }));
    const a = h('a', { href: url, download: filename, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  }

  function downloadPng(svg, filename) {
    const url = URL.createObjectURL(new Blob([svgText(svg)], { type: 'image/svg+xml' }));
    const img = new Image();
    img.onload = () => {
      const w = +svg.getAttribute('width');
      const hgt = +svg.getAttribute('height');
      const canvas = h('canvas', { width: w * 2, height: hgt * 2 });
      const ctx = canvas.getContext('2d');
      ctx.scale(2, 2);
      ctx.drawImage(img, 0, 0, w, hgt);
      URL.revokeObjectURL(url);
      canvas.toBlob((blob) => { if (blob) download(blob, 'image/png', filename); }, 'image/png');
    };
    img.src = url;
  }

  // ---------------------------------------------------------------- start

  // for the browser test and for the curious: the chart's model and SVG text
  window.podvisorUI = {
    ganttModel, micros,
    svgText: () => (document.getElementById('gantt') ? svgText(document.getElementById('gantt')) : null),
  };
  window.addEventListener('hashchange', () => {
    if (/^#token=/.test(location.hash)) start();
    else route();
  });
  start();
})();
