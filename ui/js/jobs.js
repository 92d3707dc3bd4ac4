// What the views know about a job in the shape of GET /api/jobs/{id} (web/views.py job_json):
// whether it still moves, its title, whether it has a ZIP, and its progress with the socket's
// latest ticks on top.

const ACTIVE = new Set(["queued", "processing"]);

/** Whether a job (or a video) is still waiting or rendering. */
export function isActive(status) {
  return ACTIVE.has(status);
}

/** The job's name; else "clip.mp4", "clip.mp4 + 2 more", or `empty` for a job without videos. */
export function jobTitle(job, empty = `Job ${job.id}`) {
  if (job.name) return job.name;
  const videos = job.videos || [];
  if (!videos.length) return empty;
  return videos.length === 1 ? videos[0].name : `${videos[0].name} + ${videos.length - 1} more`;
}

/**
 * How a job reads to a person: "partial" for a completed job some of whose videos failed or
 * were cancelled (the server calls a job completed once every video has ended, however it
 * ended), else its status. A green "Completed" there hid the gaps.
 */
export function shownStatus(job) {
  if (job.status !== "completed") return job.status;
  const videos = job.videos || [];
  const gaps = videos.length
    ? videos.some((v) => v.status !== "completed")
    : Object.entries(job.counts || {}).some(([s, n]) => s !== "completed" && n > 0);
  return gaps ? "partial" : "completed";
}

export function hasDownload(job) {
  if (job.status === "expired") return false;
  return (job.videos || []).some((v) => v.status === "completed"
    || (v.outputs && v.outputs.length > 0) || v.outputCount > 0);
}

/**
 * The socket's progress ticks ({"type":"progress", jobId, videoId, progress}), shown over the
 * fetched state. Ticks are not state (the server merges them and stores only some): a video's
 * tick counts while the fetched video is processing and behind it; each fetch settles them.
 */
export class ProgressTicks {
  constructor() {
    this.ticks = new Map(); // "jobId/videoId" -> percent
  }

  record(ev) {
    if (!ev.videoId || typeof ev.progress !== "number") return;
    const key = `${ev.jobId}/${ev.videoId}`;
    this.ticks.set(key, Math.max(this.ticks.get(key) || 0, ev.progress));
  }

  /** After a fetch or snapshot: forget the ticks of videos that stopped rendering. */
  settle(jobs) {
    for (const job of jobs) {
      for (const v of job.videos || []) {
        if (v.status !== "processing") this.ticks.delete(`${job.id}/${v.id}`);
      }
    }
  }

  forget(jobId, videoId) {
    this.ticks.delete(`${jobId}/${videoId}`);
  }

  /** The percent to show for `video` of `job`. */
  videoProgress(job, video) {
    if (video.status === "completed") return 100;
    const p = Number(video.progress) || 0;
    if (video.status !== "processing") return p;
    return Math.max(p, this.ticks.get(`${job.id}/${video.id}`) || 0);
  }

  /** The mean over the job's videos (the job's own figure when it lists none). */
  jobProgress(job) {
    const videos = job.videos || [];
    if (!videos.length) return Number(job.progress) || 0;
    return videos.reduce((n, v) => n + this.videoProgress(job, v), 0) / videos.length;
  }
}
