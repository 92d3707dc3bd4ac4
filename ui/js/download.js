// Download links that say why they cannot work. A plain <a download> to an expired job's ZIP
// makes the browser save the JSON error as "download.json"; a guarded link first asks the
// server for the file's first byte, shows the server's sentence when it will not come, and
// otherwise lets the click through.

import { probeDownload } from "./api.js";

/** Guard `link` (an <a> with its href set); `showError(message)` shows why it cannot work. */
export function guardDownload(link, showError) {
  let checked = false;
  link.addEventListener("click", async (ev) => {
    if (checked) {
      checked = false; // our own second click: let the browser download
      return;
    }
    ev.preventDefault();
    try {
      await probeDownload(link.href);
    } catch (err) {
      if (err.status !== 401) showError(err.message || "This download is not available.");
      return;
    }
    showError(null);
    checked = true;
    link.click();
  });
}
