// Inpainting: a canvas over the init image where a brush paints the part to re-generate. The mask
// is uploaded as an opaque grayscale PNG (white = re-generate, black = keep), the form the server
// reads (`mask_image` in docs/protocol.md), after every stroke, clear or invert.
import { el } from './controls.js';
import { uploadInitImage } from './api.js';
import { showError } from './ui.js';

const PAINT = [255, 64, 64]; // the stroke colour on screen; only alpha is the mask

export class MaskEditor {
  /**
   * @param {(id: string | null) => void} onMask  the uploaded mask's id (null: no mask)
   */
  constructor(onMask) {
    this.onMask = onMask;
    this.id = null;
    this.uploading = null; // the upload in flight (a Promise)
    this.image = el('img', { class: 'mask-base', alt: 'init image to paint the mask on' });
    this.canvas = el('canvas', { class: 'mask-canvas', id: 'd-mask-canvas', width: 64, height: 64,
                                 'aria-label': 'inpainting mask: paint the part to re-generate' });
    this.brush = el('input', { type: 'range', id: 'd-mask-brush', min: 1, max: 64, step: 1, value: 8,
                               title: 'brush diameter in image pixels' });
    this.status = el('span', { class: 'mono', id: 'd-mask-status', text: 'no mask' });
    const clear = el('button', { type: 'button', id: 'd-mask-clear', text: 'clear', 'aria-label': 'clear the mask' });
    const invert = el('button', { type: 'button', id: 'd-mask-invert', text: 'invert',
                                  'aria-label': 'invert the mask', title: 're-generate everything but what is painted' });
    const close = el('button', { type: 'button', id: 'd-mask-off', text: 'no inpainting',
                                 title: 'drop the mask: Generate runs plain img2img' });
    clear.addEventListener('click', () => { this.#ctx().clearRect(0, 0, this.canvas.width, this.canvas.height); this.#changed(); });
    invert.addEventListener('click', () => this.invert());
    close.addEventListener('click', () => this.close());
    this.stage = el('div', { class: 'mask-stage' }, this.image, this.canvas);
    this.node = el('div', { class: 'mask-editor', id: 'd-mask-editor', hidden: true }, this.stage,
      el('div', { class: 'row' }, el('label', { for: 'd-mask-brush', text: 'brush' }), this.brush, clear, invert, close),
      el('p', { class: 'hint', text: 'Paint what to re-generate; the rest stays as it is.' }), this.status);
    this.#installBrush();
  }

  /** Paint on `url` (the init image) with an empty mask of its size. */
  open(url) {
    this.image.onload = () => {
      this.canvas.width = this.image.naturalWidth;
      this.canvas.height = this.image.naturalHeight;
      this.stage.style.aspectRatio = `${this.canvas.width} / ${this.canvas.height}`;
      this.brush.max = String(Math.max(4, Math.round(Math.max(this.canvas.width, this.canvas.height) / 2)));
      this.brush.value = String(Math.max(1, Math.round(this.canvas.width / 8)));
      this.#setId(null, 'paint the part to re-generate');
    };
    this.image.src = url;
    this.node.hidden = false;
  }

  /** Leave inpainting: no mask, editor hidden. */
  close() {
    this.node.hidden = true;
    this.#setId(null, 'no mask');
  }

  /** A mask restored from a record (only its id is known: nothing to paint on). */
  restore(id) {
    this.node.hidden = true;
    this.#setId(id, id ? `mask id ${id} (restored)` : 'no mask');
  }

  invert() {
    const ctx = this.#ctx();
    const data = ctx.getImageData(0, 0, this.canvas.width, this.canvas.height);
    for (let i = 0; i < data.data.length; i += 4) {
      data.data.set(PAINT, i);
      data.data[i + 3] = 255 - data.data[i + 3];
    }
    ctx.putImageData(data, 0, 0);
    this.#changed();
  }

  /** The painted fraction of the image, 0..1. */
  coverage() {
    const { data } = this.#ctx().getImageData(0, 0, this.canvas.width, this.canvas.height);
    let sum = 0;
    for (let i = 3; i < data.length; i += 4) sum += data[i];
    return sum / (255 * (data.length / 4));
  }

  /** The mask as the server reads it: an opaque grayscale PNG, white where painted. */
  toBlob() {
    const out = el('canvas', { width: this.canvas.width, height: this.canvas.height });
    const src = this.#ctx().getImageData(0, 0, this.canvas.width, this.canvas.height);
    const octx = out.getContext('2d');
    const dst = octx.createImageData(this.canvas.width, this.canvas.height);
    for (let i = 0; i < src.data.length; i += 4) {
      const a = src.data[i + 3];
      dst.data[i] = a; dst.data[i + 1] = a; dst.data[i + 2] = a; dst.data[i + 3] = 255;
    }
    octx.putImageData(dst, 0, 0);
    return new Promise((resolve) => out.toBlob(resolve, 'image/png'));
  }

  #ctx() {
    return this.canvas.getContext('2d', { willReadFrequently: true });
  }

  #setId(id, text) {
    this.id = id;
    this.status.textContent = text;
    this.onMask(id);
  }

  /** Upload the mask as it is now; an empty mask is no mask. */
  #changed() {
    const covered = this.coverage();
    if (covered === 0) {
      this.#setId(null, 'empty mask: paint the part to re-generate');
      return;
    }
    this.#setId(null, 'uploading the mask…');
    const upload = this.toBlob()
      .then((blob) => uploadInitImage(new File([blob], 'mask.png', { type: 'image/png' })))
      .then((id) => {
        if (this.uploading !== upload) return; // a newer stroke's upload supersedes this one
        this.#setId(id, `mask id ${id}: ${Math.round(covered * 100)}% to re-generate`);
      })
      .catch((err) => {
        if (this.uploading === upload) this.#setId(null, 'mask upload failed');
        showError(`inpainting mask: ${err.message}`);
      })
      .finally(() => { if (this.uploading === upload) this.uploading = null; });
    this.uploading = upload;
  }

  #installBrush() {
    let last = null;
    const at = (ev) => {
      const r = this.canvas.getBoundingClientRect();
      return [(ev.clientX - r.left) * (this.canvas.width / r.width), (ev.clientY - r.top) * (this.canvas.height / r.height)];
    };
    const stroke = (from, to) => {
      const ctx = this.#ctx();
      ctx.strokeStyle = ctx.fillStyle = `rgb(${PAINT.join(',')})`;
      ctx.lineWidth = Number(this.brush.value);
      ctx.lineCap = 'round';
      ctx.beginPath();
      ctx.moveTo(...from);
      ctx.lineTo(...to);
      ctx.stroke();
    };
    this.canvas.addEventListener('pointerdown', (ev) => {
      ev.preventDefault();
      this.canvas.setPointerCapture?.(ev.pointerId);
      last = at(ev);
      stroke(last, last);
    });
    this.canvas.addEventListener('pointermove', (ev) => {
      if (!last) return;
      const next = at(ev);
      stroke(last, next);
      last = next;
    });
    const end = () => {
      if (!last) return;
      last = null;
      this.#changed();
    };
    this.canvas.addEventListener('pointerup', end);
    this.canvas.addEventListener('pointercancel', end);
  }
}
