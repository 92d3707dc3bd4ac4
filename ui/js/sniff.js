// Type sniffing: what a file's first bytes say it is, so the upload page judges content, not
// names. The server has the last word (it probes every upload with FFmpeg); this only keeps
// clearly-not-video files (text, images, PDFs, audio) from being sent.

export const HEAD_BYTES = 4096;

// Extensions of the containers the server opens; they matter only when nothing else tells.
const VIDEO_EXTENSIONS = [".mp4", ".mov", ".m4v", ".webm", ".mkv", ".avi", ".mpg", ".mpeg",
  ".ts", ".mts", ".m2ts", ".3gp", ".flv", ".wmv", ".ogv"];
export const ACCEPT = ["video/*", ...VIDEO_EXTENSIONS].join(",");
const VIDEO_NAME = new RegExp(`(${VIDEO_EXTENSIONS.join("|").replaceAll(".", "\\.")})$`, "i");

const ASF_GUID = [0x30, 0x26, 0xb2, 0x75, 0x8e, 0x66, 0xcf, 0x11, 0xa6, 0xd9, 0x00, 0xaa];
// ISO BMFF brands that are pictures or sound, not video.
const STILL_OR_AUDIO_BRANDS = new Set(["heic", "heix", "mif1", "msf1", "avif", "M4A ", "M4B "]);
// The first box of an old QuickTime file without `ftyp`.
const QUICKTIME_BOXES = new Set(["moov", "mdat", "wide", "free", "skip", "pnot"]);

const ascii = (b, start, end) => String.fromCharCode(...b.subarray(start, end));
const startsWith = (b, bytes, at = 0) => bytes.every((x, i) => b[at + i] === x);

/** MPEG-TS: a 0x47 sync byte every 188 bytes (192 with the 4-byte timestamps of .m2ts/.mts). */
function isTransportStream(b) {
  return [[188, 0], [192, 4]].some(([size, first]) => {
    const packets = Math.min(4, Math.floor((b.length - first - 1) / size) + 1);
    if (packets < 2) return false;
    for (let i = 0; i < packets; i += 1) if (b[first + i * size] !== 0x47) return false;
    return true;
  });
}

/** Printable text (ASCII or UTF-8, tabs and line breaks), or a UTF-16 byte-order mark. */
function isText(b) {
  if (startsWith(b, [0xff, 0xfe]) || startsWith(b, [0xfe, 0xff])) return true;
  return b.length > 0 && b.every((x) => x >= 0x20 ? x !== 0x7f : x === 9 || x === 10 || x === 12 || x === 13);
}

/**
 * What the first bytes of a file are: `{ video: true, format }` for a container the server can
 * open, `{ video: false, format }` for something that is clearly no video, null when unsure.
 */
export function sniff(b) {
  const video = (format) => ({ video: true, format });
  const other = (format) => ({ video: false, format });
  if (b.length >= 12 && ascii(b, 4, 8) === "ftyp") {
    return STILL_OR_AUDIO_BRANDS.has(ascii(b, 8, 12)) ? other("HEIF image or M4A audio") : video("MP4/MOV");
  }
  if (startsWith(b, [0x1a, 0x45, 0xdf, 0xa3])) return video("WebM/MKV");
  if (ascii(b, 0, 4) === "RIFF") {
    const form = ascii(b, 8, 12);
    if (form === "AVI " || form === "AVIX") return video("AVI");
    return other(form === "WEBP" ? "WebP image" : form === "WAVE" ? "WAV audio" : "RIFF file");
  }
  if (startsWith(b, [0, 0, 1, 0xba]) || startsWith(b, [0, 0, 1, 0xb3])) return video("MPEG");
  if (isTransportStream(b)) return video("MPEG-TS");
  if (ascii(b, 0, 3) === "FLV" && b[3] === 1) return video("FLV");
  if (ascii(b, 0, 4) === "OggS") return video("Ogg");
  if (startsWith(b, ASF_GUID)) return video("ASF/WMV");

  if (startsWith(b, [0x89, 0x50, 0x4e, 0x47])) return other("PNG image");
  if (startsWith(b, [0xff, 0xd8, 0xff])) return other("JPEG image");
  if (ascii(b, 0, 4) === "GIF8") return other("GIF image");
  if (ascii(b, 0, 4) === "%PDF") return other("PDF document");
  if (startsWith(b, [0x50, 0x4b, 0x03, 0x04]) || startsWith(b, [0x1f, 0x8b])) return other("archive");
  if (ascii(b, 0, 3) === "ID3" || ascii(b, 0, 4) === "fLaC") return other("audio");
  if (isText(b)) return other("text");
  // Checked after text: four letters at offset 4 are common in prose too.
  if (b.length >= 8 && QUICKTIME_BOXES.has(ascii(b, 4, 8))) return video("QuickTime");
  return null;
}

/**
 * Whether `file` may be a video: its content says so, or nothing in it says otherwise and its
 * type (or, without one, its name) is a video's. Unsure answers are left to the server's probe.
 */
export async function mayBeVideo(file) {
  let found = null;
  try {
    found = sniff(new Uint8Array(await file.slice(0, HEAD_BYTES).arrayBuffer()));
  } catch {
    found = null; // unreadable here: the type and name decide
  }
  if (found) return found.video;
  const type = file.type || "";
  if (type.startsWith("video/")) return true;
  return (type === "" || type === "application/octet-stream") && VIDEO_NAME.test(file.name);
}
