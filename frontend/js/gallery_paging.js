// DOM-free helpers of the gallery: pages over the server's total, the pager's words, download names.

export const PAGE_SIZE = 48;
export const MAX_QUERY_CHARS = 200; // the server's cap on `q` (app/store/search.py)

/** The query string of one page: `limit`, `offset` and, when searching, `q`. */
export function pageQuery({ offset = 0, size = PAGE_SIZE, q = '' } = {}) {
  const params = new URLSearchParams({ limit: String(size), offset: String(offset) });
  const text = String(q).trim();
  if (text) params.set('q', text);
  return params.toString();
}

/** Offset of the last page that holds anything (0 for an empty gallery). */
export function lastPageOffset(total, size = PAGE_SIZE) {
  return total > 0 ? Math.floor((total - 1) / size) * size : 0;
}

/** Where the pager stands: which buttons work and what the count line says. */
export function pagerState({ offset, count, total, size = PAGE_SIZE, q = '' }) {
  const text = String(q).trim();
  const found = text ? ` matching “${text}”` : '';
  const noun = total === 1 ? 'image' : 'images';
  let label;
  if (total === 0) label = text ? `no images match “${text}”` : 'no images yet';
  else if (count === 0) label = `past the last of ${total} ${noun}${found}`;
  else label = `${offset + 1}–${offset + count} of ${total} ${noun}${found}`;
  return {
    newer: offset > 0,
    older: offset + count < total,
    label,
    page: Math.floor(offset / size) + 1,
    pages: Math.max(1, Math.ceil(total / size)),
  };
}

/** A file name from the prompt and seed: `noisescope-red-heart-seed1234.png`. */
export function downloadName(item) {
  const prompt = String(item?.params?.prompt ?? '').toLowerCase().normalize('NFKC');
  const slug = prompt.replace(/[^\p{L}\p{N}]+/gu, '-').replace(/^-+|-+$/g, '').slice(0, 48).replace(/-+$/, '');
  const what = slug || (item?.engine === 'gan' ? 'gan' : 'image');
  const seed = Number.isInteger(item?.seed) ? `seed${item.seed}` : String(item?.id ?? '').slice(0, 24);
  return `noisescope-${what}${seed ? `-${seed}` : ''}.png`;
}
