// Binary image frames, as laid out in docs/protocol.md (mirror of app/api/protocol.py):
//   offset 0  uint8   magic 0x4E
//   offset 1  uint8   frame type
//   offset 2  uint16  JSON length H, big-endian
//   offset 4  H bytes UTF-8 JSON metadata
//   offset 4+H        image bytes

export const MAGIC = 0x4e;
export const HEADER_BYTES = 4;
export const MAX_META_BYTES = 0xffff;
export const FrameType = Object.freeze({ PREVIEW: 1, FINAL: 2, TIMELINE: 3 });

const MIME = { jpeg: 'image/jpeg', webp: 'image/webp', png: 'image/png' };

/** Mime type for a frame's `format` field. */
export function mimeFor(format) {
  return MIME[format] || 'application/octet-stream';
}

/**
 * Unpack one binary frame.
 * @param {ArrayBuffer|Uint8Array} data
 * @returns {{type: number, meta: object, image: Uint8Array}}
 */
export function decodeFrame(data) {
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
  if (bytes.byteLength < HEADER_BYTES) throw new Error('frame shorter than its header');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint8(0) !== MAGIC) throw new Error('bad frame magic');
  const type = view.getUint8(1);
  const metaLength = view.getUint16(2, false);
  const end = HEADER_BYTES + metaLength;
  if (bytes.byteLength < end) throw new Error('frame shorter than its metadata');
  const meta = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(HEADER_BYTES, end)));
  return { type, meta, image: bytes.subarray(end) };
}

/**
 * Pack one binary frame (the server's job; here for tests and symmetry).
 * @param {number} type
 * @param {object} meta
 * @param {Uint8Array} image
 * @returns {Uint8Array}
 */
export function encodeFrame(type, meta, image) {
  const raw = new TextEncoder().encode(JSON.stringify(meta));
  if (raw.byteLength > MAX_META_BYTES) throw new Error('frame metadata too large');
  const out = new Uint8Array(HEADER_BYTES + raw.byteLength + image.byteLength);
  const view = new DataView(out.buffer);
  view.setUint8(0, MAGIC);
  view.setUint8(1, type);
  view.setUint16(2, raw.byteLength, false);
  out.set(raw, HEADER_BYTES);
  out.set(image, HEADER_BYTES + raw.byteLength);
  return out;
}
