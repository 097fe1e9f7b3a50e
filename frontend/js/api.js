// HTTP calls to the server; every URL carries the page's token when there is one.
import { pageToken } from './ws.js';

/** `path` with the page token appended. */
export function withToken(path) {
  const token = pageToken();
  if (!token) return path;
  return `${path}${path.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}`;
}

async function readError(res) {
  try {
    const body = await res.json();
    if (typeof body.detail === 'string') return body.detail;
    if (Array.isArray(body.detail)) return body.detail.map((d) => d.msg || String(d)).join('; ');
    if (body.message) return body.message;
  } catch {
    /* not JSON */
  }
  return `${res.status} ${res.statusText}`;
}

async function getJson(path) {
  const res = await fetch(withToken(path));
  if (!res.ok) throw new Error(`${path}: ${await readError(res)}`);
  return res.json();
}

export function fetchInfo() {
  return getJson('/api/info');
}

/** Newest first; accepts a bare list or {items: [...]}. */
export async function fetchGallery(limit = 48) {
  const body = await getJson(`/api/gallery?limit=${limit}`);
  return Array.isArray(body) ? body : body.items || body.images || [];
}

export function galleryImageUrl(item) {
  return withToken(item.url || `/api/gallery/${encodeURIComponent(item.id)}.png`);
}

/** Upload an init image; resolves to its id. */
export async function uploadInitImage(file) {
  const form = new FormData();
  form.append('file', file);
  const res = await fetch(withToken('/api/uploads'), { method: 'POST', body: form });
  if (!res.ok) throw new Error(`upload failed: ${await readError(res)}`);
  return (await res.json()).id;
}
