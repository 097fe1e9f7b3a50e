// Driven by test_protocol.py: reads {"decode": [hex...], "encode": [{type, meta, image_hex}...]} on stdin
// and prints what frontend/js/protocol.js makes of them, as JSON.
import { decodeFrame, encodeFrame } from '../../frontend/js/protocol.js';

const toHex = (u8) => Buffer.from(u8).toString('hex');
const fromHex = (hex) => new Uint8Array(Buffer.from(hex, 'hex'));

let input = '';
for await (const chunk of process.stdin) input += chunk;
const cases = JSON.parse(input);

const decoded = cases.decode.map((hex) => {
  const bytes = fromHex(hex);
  // Decode from an ArrayBuffer slice that starts mid-buffer, as a WebSocket message may not.
  const padded = new Uint8Array(bytes.byteLength + 3);
  padded.set(bytes, 3);
  try {
    const a = decodeFrame(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
    const b = decodeFrame(padded.subarray(3));
    return { type: a.type, meta: a.meta, image_hex: toHex(a.image), image_offset: bytes.byteLength - a.image.byteLength,
             same_from_view: toHex(b.image) === toHex(a.image) && JSON.stringify(b.meta) === JSON.stringify(a.meta) };
  } catch (err) {
    return { error: err.message };
  }
});
const encoded = cases.encode.map((c) => toHex(encodeFrame(c.type, c.meta, fromHex(c.image_hex))));
process.stdout.write(JSON.stringify({ decoded, encoded }));
