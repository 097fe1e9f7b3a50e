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

/** One page of the gallery, newest first: `{items, total}` (`total` from X-Total-Count: how many
 *  images match `q` in all). `query`: gallery_paging.js `pageQuery`. */
export async function fetchGalleryPage(query) {
  const path = `/api/gallery?${query}`;
  const res = await fetch(withToken(path));
  if (!res.ok) throw new Error(`gallery: ${await readError(res)}`);
  const items = await res.json();
  const total = Number(res.headers.get('x-total-count'));
  return { items, total: Number.isFinite(total) ? total : items.length };
}

/** Delete a gallery image (its row and its PNG). */
export async function deleteGalleryImage(id) {
  const res = await fetch(withToken(`/api/gallery/${encodeURIComponent(id)}`), { method: 'DELETE' });
  if (!res.ok) throw new Error(`delete failed: ${await readError(res)}`);
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
