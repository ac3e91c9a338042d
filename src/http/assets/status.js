// The operator dashboard: every 2 seconds, GET /api/stats and draw it. The numbers between two
// samples are the server's (rates, p50/p99 from its latency histogram, the cache hit ratio); this
// script only formats them and draws the last minutes as small SVG line charts.
'use strict';

(() => {
  const PROTOCOLS = [
    ['handle_udp', 'Handle UDP'], ['handle_tcp', 'Handle TCP'], ['http', 'HTTP'],
    ['dns_udp', 'DNS UDP'], ['dns_tcp', 'DNS TCP'],
  ];
  const SVG = 'http://www.w3.org/2000/svg';
  let updates = 0;
  let failures = 0;

  const $ = (id) => document.getElementById(id);
  const set = (id, text) => { const el = $(id); if (el) el.textContent = text; };
  const dash = '–';

  function number(v, digits = 0) {
    if (v === null || v === undefined || Number.isNaN(v)) return dash;
    return Number(v).toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: 0 });
  }
  function ms(v) {
    if (v === null || v === undefined) return dash;
    return v < 1 ? `${number(v * 1000, 0)} µs` : `${number(v, 2)} ms`;
  }
  function percent(v) { return v === null || v === undefined ? dash : `${number(v * 100, 1)}%`; }
  function bytes(v) {
    if (v === null || v === undefined) return dash;
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return `${number(v, i === 0 ? 0 : 1)} ${units[i]}`;
  }

  function cell(row, text, className) {
    const td = document.createElement('td');
    td.textContent = text;  // never innerHTML: every string here came over the network
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  }

  // Draws `series` (arrays of numbers or nulls, oldest first) as polylines scaled to their maximum.
  function chart(svg, series, { max, unit } = {}) {
    if (!svg) return;
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    const width = 300, height = 80, top = 10, bottom = 78;
    let peak = max || 0;
    for (const s of series) for (const v of s.values) if (v !== null && v > peak) peak = v;
    if (peak <= 0) peak = 1;
    const axis = document.createElementNS(SVG, 'line');
    axis.setAttribute('x1', '0'); axis.setAttribute('x2', String(width));
    axis.setAttribute('y1', String(bottom)); axis.setAttribute('y2', String(bottom));
    axis.setAttribute('class', 'axis');
    svg.appendChild(axis);
    const label = document.createElementNS(SVG, 'text');
    label.setAttribute('x', '2'); label.setAttribute('y', '8');
    label.textContent = `${number(peak, peak < 10 ? 2 : 0)}${unit || ''}`;
    svg.appendChild(label);
    for (const s of series) {
      const n = s.values.length;
      const points = [];
      s.values.forEach((v, i) => {
        if (v === null) return;
        const x = n <= 1 ? width : (i / (n - 1)) * width;
        const y = bottom - (v / peak) * (bottom - top);
        points.push(`${x.toFixed(1)},${y.toFixed(1)}`);
      });
      if (points.length === 0) continue;
      if (points.length === 1) points.push(points[0].replace(/^[^,]+/, String(width)));
      const line = document.createElementNS(SVG, 'polyline');
      line.setAttribute('points', points.join(' '));
      line.setAttribute('class', s.className);
      svg.appendChild(line);
    }
  }

  function legend(id, series) {
    const el = $(id);
    if (!el) return;
    el.textContent = '';
    for (const s of series) {
      const span = document.createElement('span');
      span.className = s.className;
      span.textContent = s.name;
      el.appendChild(span);
    }
  }

  function render(stats) {
    const series = stats.series || [];
    const last = series.length > 0 ? series[series.length - 1] : null;
    set('rps-total', last ? number(last.rps.all, 1) : dash);
    set('p50-total', last ? ms(last.p50_ms.all) : dash);
    set('p99-total', last ? ms(last.p99_ms.all) : dash);
    const ratio = last && last.cache_hit_ratio !== null ? last.cache_hit_ratio : stats.cache.hit_ratio;
    set('cache-hit-ratio', percent(ratio));

    const body = document.querySelector('#protocols tbody');
    body.textContent = '';
    for (const [key, name] of PROTOCOLS) {
      const row = document.createElement('tr');
      row.dataset.protocol = key;
      const th = document.createElement('th');
      th.scope = 'row';
      th.textContent = name;
      row.appendChild(th);
      cell(row, last ? number(last.rps[key], 1) : dash, 'rps num');
      cell(row, last ? ms(last.p50_ms[key]) : dash, 'p50 num');
      cell(row, last ? ms(last.p99_ms[key]) : dash, 'p99 num');
      cell(row, number(stats.requests_total[key]), 'total num');
      body.appendChild(row);
    }

    const rpsSeries = PROTOCOLS.map(([key, name], i) => ({
      name, className: `s${i + 1}`, values: series.map((p) => p.rps[key]),
    })).filter((s) => s.values.some((v) => v !== null && v > 0));
    chart($('chart-rps'), rpsSeries.length ? rpsSeries : [{ name: 'all', className: 's1', values: series.map((p) => p.rps.all) }]);
    legend('legend-rps', rpsSeries);
    const latency = [
      { name: 'p50', className: 's1', values: series.map((p) => p.p50_ms.all) },
      { name: 'p99', className: 's2', values: series.map((p) => p.p99_ms.all) },
    ];
    chart($('chart-latency'), latency, { unit: ' ms' });
    legend('legend-latency', latency);
    chart($('chart-cache'), [{ name: 'hit ratio', className: 's3', values: series.map((p) => (p.cache_hit_ratio === null ? null : p.cache_hit_ratio * 100)) }], { max: 100, unit: '%' });

    const cache = stats.cache;
    set('cache-memory', `${bytes(cache.bytes)} of ${bytes(cache.capacity_bytes)}`);
    set('cache-entries', number(cache.entries));
    set('cache-hits', `${number(cache.hits)} / ${number(cache.misses)}`);

    const storage = stats.storage;
    set('disk-total', bytes(storage.live_sst_bytes));
    set('keys-total', number(storage.estimated_keys));
    set('read-errors', number(storage.read_errors));
    const shards = document.querySelector('#shards tbody');
    shards.textContent = '';
    for (const s of storage.shards) {
      const row = document.createElement('tr');
      cell(row, String(s.shard));
      cell(row, bytes(s.live_sst_bytes), 'num');
      cell(row, bytes(s.memtable_bytes), 'num');
      cell(row, number(s.estimated_keys), 'num');
      cell(row, s.write_stalled ? 'stalled' : 'ok', s.write_stalled ? 'state-bad' : 'state-ok');
      shards.appendChild(row);
    }

    const prefixes = stats.prefixes;
    set('prefix-homed', number(prefixes.homed));
    set('prefix-delegated', number(prefixes.delegated));
    set('prefix-mirrored', number(prefixes.mirrored));
    const names = [];
    if (prefixes.homed_names.length) names.push(`Homed: ${prefixes.homed_names.join(', ')}${prefixes.homed > prefixes.homed_names.length ? ', …' : ''}`);
    if (prefixes.mirrored_names.length) names.push(`Mirrored: ${prefixes.mirrored_names.join(', ')}${prefixes.mirrored > prefixes.mirrored_names.length ? ', …' : ''}`);
    set('prefix-names', names.join('. '));

    const links = (stats.replication && stats.replication.links) || [];
    const replication = document.querySelector('#replication tbody');
    replication.textContent = '';
    if (links.length === 0) {
      const row = document.createElement('tr');
      cell(row, 'No replication links.').colSpan = 7;
      replication.appendChild(row);
    }
    for (const l of links) {
      const row = document.createElement('tr');
      cell(row, l.peer);
      cell(row, l.direction);
      cell(row, l.address);
      cell(row, l.state, l.state === 'streaming' || l.state === 'connected' ? 'state-ok' : '');
      cell(row, number(l.lag_entries), 'num');
      cell(row, number(l.lag_seconds, 1), 'num');
      cell(row, l.last_error || '');
      replication.appendChild(row);
    }

    updates += 1;
    document.body.dataset.updates = String(updates);
    set('updated', `Updated ${new Date(stats.time_ms).toLocaleTimeString()}; up ${number(stats.uptime_seconds)} s.`);
  }

  async function refresh() {
    try {
      const response = await fetch('/api/stats', { credentials: 'same-origin', cache: 'no-store' });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      render(await response.json());
      failures = 0;
      set('stats-error', '');
    } catch (e) {
      failures += 1;
      set('stats-error', `Could not read /api/stats (${e.message}); retrying.`);
    }
    // Back off while the node does not answer, up to 30 s.
    setTimeout(refresh, Math.min(2000 * 2 ** Math.min(failures, 4), 30000));
  }

  document.addEventListener('DOMContentLoaded', refresh);
})();
