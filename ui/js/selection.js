// The upload page's selected files: each one's content sniffed (sniff.js) and checked against
// the server's limits, and what stands in the way of sending them.

import { formatBytes, plural } from "./dom.js";
import { mayBeVideo } from "./sniff.js";

export const FORMATS = "MP4, MOV, WebM, MKV, AVI…";

/** What is wrong with the `index`-th selected item ({ file, video, serverIssue }), or null. */
function fileIssue({ file, video, serverIssue }, index, limits) {
  if (serverIssue) return serverIssue;
  if (video === false) return `Not a video file (${FORMATS})`;
  if (file.size === 0) return "This file is empty";
  if (file.size > limits.maxUpload) return `Larger than the ${formatBytes(limits.maxUpload)} limit`;
  if (index >= limits.maxFiles) return `Over the limit of ${plural(limits.maxFiles, "file")} per upload`;
  return null;
}

function fileKey(file) {
  return `${file.name}\u0000${file.size}\u0000${file.lastModified}`;
}

export class Selection {
  constructor() {
    this.items = []; // { key, file, video (undefined until sniffed), serverIssue }
  }

  get size() {
    return this.items.length;
  }

  get files() {
    return this.items.map((i) => i.file);
  }

  get totalBytes() {
    return this.items.reduce((n, i) => n + i.file.size, 0);
  }

  /** Add the files of `fileList` not selected yet; resolves once their content is known. */
  add(fileList) {
    const known = new Set(this.items.map((i) => i.key));
    const added = [];
    for (const file of Array.from(fileList || [])) {
      const key = fileKey(file);
      if (known.has(key)) continue;
      known.add(key);
      added.push({ key, file });
    }
    this.items.push(...added);
    return Promise.all(added.map(async (item) => { item.video = await mayBeVideo(item.file); }));
  }

  /** Remove an item; returns the index it had. */
  remove(key) {
    const index = this.items.findIndex((i) => i.key === key);
    this.items = this.items.filter((i) => i.key !== key);
    return index;
  }

  /** Each item's issue (or null), in order. */
  issues(limits) {
    return this.items.map((item, index) => fileIssue(item, index, limits));
  }

  /** Sentences for what keeps the selection from being sent; empty when it can go. */
  problems(limits) {
    const out = [];
    const bad = this.issues(limits).filter(Boolean).length;
    if (bad) out.push(`Remove ${plural(bad, "flagged file")} to continue.`);
    if (this.items.some((i) => i.video === undefined)) out.push("Checking the files…");
    if (this.size > limits.maxFiles) out.push(`At most ${plural(limits.maxFiles, "file")} per upload.`);
    // No limit on the total: each file is its own resumable upload (resumable.js).
    return out;
  }
}
