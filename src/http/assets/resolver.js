// The resolver page's enhancements; the lookup itself works without them (server-rendered).
// - timestamps (<time datetime="...Z">, written in UTC) are shown in the reader's local time;
// - "Copy as JSON" copies the JSON API's answer shown under "JSON".
'use strict';

document.addEventListener('DOMContentLoaded', () => {
  for (const el of document.querySelectorAll('time[datetime]')) {
    const when = new Date(el.getAttribute('datetime'));
    if (Number.isNaN(when.getTime())) continue;
    el.title = el.getAttribute('datetime');
    el.textContent = when.toLocaleString(undefined, {
      year: 'numeric', month: 'short', day: 'numeric',
      hour: '2-digit', minute: '2-digit', second: '2-digit', timeZoneName: 'short',
    });
  }

  const copy = document.getElementById('copy-json');
  const source = document.getElementById('record-json');
  const status = document.getElementById('copy-status');
  if (copy && source) {
    copy.hidden = false;
    copy.addEventListener('click', async () => {
      const text = source.textContent;
      try {
        await navigator.clipboard.writeText(text);
        status.textContent = 'Copied.';
      } catch (e) {
        // No clipboard access (an insecure origin, a denied permission): select the text instead.
        const details = source.closest('details');
        if (details) details.open = true;
        const range = document.createRange();
        range.selectNodeContents(source);
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        status.textContent = 'Selected: press Ctrl+C to copy.';
      }
    });
  }
});
