// The model picker in the top bar: the models of the server's --models-dir (GET /api/models), one
// loaded on request (POST /api/models/load) while runs go on, its progress polled until it is in.
import { withToken } from './api.js';

const KIND_LABELS = { diffusion: 'Diffusion', gan: 'GAN' };
const POLL_MS = 400;

/** MiB / GiB, one decimal. */
export function sizeText(bytes) {
  const gib = bytes / 2 ** 30;
  return gib >= 1 ? `${gib.toFixed(1)} GiB` : `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

/**
 * The picker's option groups: one per kind that loads (Diffusion, GAN), then "cannot load here" with
 * each reason in its title. Loaded models are marked and not choosable again.
 * @returns {{label: string, options: {value: string, text: string, title: string, disabled: boolean}[]}[]}
 */
export function modelGroups(models) {
  const groups = [];
  for (const kind of ['diffusion', 'gan']) {
    const options = models.filter((m) => m.kind === kind).map((m) => ({
      value: m.id,
      text: `${m.id} — ${m.family}, ${sizeText(m.bytes)}${m.active ? ' (loaded)' : ''}`,
      title: m.active ? 'loaded now' : `load ${m.id} into the studio`,
      disabled: Boolean(m.active),
    }));
    if (options.length) groups.push({ label: KIND_LABELS[kind], options });
  }
  const refused = models.filter((m) => !m.kind).map((m) => ({
    value: m.id, text: `${m.id} — ${m.family}`, title: m.problem || 'not loadable', disabled: true,
  }));
  if (refused.length) groups.push({ label: 'cannot load here', options: refused });
  return groups;
}

/** One line for a load's progress: "loading fox-b: reading the weights (1/4), 2.3 s". */
export function loadText(load) {
  if (!load) return '';
  if (load.state === 'loading') {
    return `loading ${load.id}: ${load.stage_words} (${load.stage_index + 1}/${load.stages}), ${load.seconds.toFixed(1)} s`;
  }
  if (load.state === 'failed') return load.error || `${load.id} could not be loaded`;
  const notes = (load.notes || []).filter((n) => n !== 'already loaded');
  return `${load.id} loaded in ${load.seconds.toFixed(1)} s${notes.length ? ` — ${notes.join('; ')}` : ''}`;
}

async function readDetail(res) {
  try {
    const body = await res.json();
    if (typeof body.detail === 'string') return body.detail;
  } catch {
    /* not JSON */
  }
  return `${res.status} ${res.statusText}`;
}

export class ModelPicker {
  /**
   * @param {{box: HTMLElement, select: HTMLSelectElement, button: HTMLButtonElement, status: HTMLElement}} el
   * @param {{onLoaded: (load: object) => void, onError: (message: string) => void}} hooks
   */
  constructor(el, hooks) {
    this.el = el;
    this.hooks = hooks;
    this.loading = false;
    this.seen = null; // the load whose end was reported, so a poll reports it once
    el.button.addEventListener('click', () => this.load(el.select.value));
    el.select.addEventListener('change', () => this.#buttonState());
  }

  /** Read the list; keeps polling while a load (this page's or another's) runs. */
  async refresh() {
    let listing;
    try {
      const res = await fetch(withToken('/api/models'));
      if (!res.ok) throw new Error(await readDetail(res));
      listing = await res.json();
    } catch (err) {
      this.el.box.hidden = true;
      return null;
    }
    this.el.box.hidden = !listing.enabled;
    if (!listing.enabled) return listing;
    this.#fill(listing.models);
    this.#progress(listing.load);
    return listing;
  }

  async load(id) {
    if (!id || this.loading) return;
    this.loading = true;
    this.#buttonState();
    const res = await fetch(withToken('/api/models/load'), {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ id }),
    });
    if (!res.ok) {
      this.loading = false;
      const message = await readDetail(res);
      this.el.status.textContent = message;
      this.el.status.dataset.state = 'failed';
      this.hooks.onError(message);
      this.#buttonState();
      return;
    }
    this.#progress((await res.json()).load);
  }

  #fill(models) {
    const select = this.el.select;
    const keep = select.value;
    select.replaceChildren();
    const placeholder = new Option('load a model…', '');
    select.append(placeholder);
    for (const group of modelGroups(models)) {
      const optgroup = document.createElement('optgroup');
      optgroup.label = group.label;
      for (const o of group.options) {
        const option = new Option(o.text, o.value);
        option.title = o.title;
        option.disabled = o.disabled;
        optgroup.append(option);
      }
      select.append(optgroup);
    }
    const still = [...select.options].find((o) => o.value === keep && !o.disabled);
    select.value = still ? keep : '';
    this.#buttonState();
  }

  #progress(load) {
    const status = this.el.status;
    status.textContent = loadText(load);
    status.dataset.state = load?.state ?? '';
    const key = load ? `${load.id}@${load.state}@${load.seconds}` : null;
    if (load?.state === 'loading') {
      this.loading = true;
      this.#buttonState();
      setTimeout(() => this.refresh(), POLL_MS);
      return;
    }
    const wasLoading = this.loading;
    this.loading = false;
    this.#buttonState();
    if (!wasLoading || !load || key === this.seen) return;
    this.seen = key;
    if (load.state === 'ready') this.hooks.onLoaded(load);
    else if (load.state === 'failed') this.hooks.onError(load.error);
  }

  #buttonState() {
    this.el.button.disabled = this.loading || !this.el.select.value;
    this.el.select.disabled = this.loading;
  }
}
