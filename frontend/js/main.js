// Wires the socket, the two panels and the gallery together.
//   protocol.js  binary frame codec (docs/protocol.md)     ws.js        the one websocket client
//   api.js       HTTP: info, uploads, gallery               runs.js      per-run frame caches and forks
//   specs.js     control specs and message params           controls.js  specs -> inputs
//   diffusion.js / gan.js / gallery.js  the three areas      plot.js, ui.js  drawing and DOM helpers
//   compare.js   the side-by-side table (live and measured figures)
//   upscale.js   Upscale ×4: GAN / diffusion / both on a gallery image or a file, before/after slider
//   models.js    the model picker: the server's --models-dir, one loaded on request with its progress
//   queue.js     the queue list, Generate's state, the tab title   input.js  prompts, seeds, shortcuts
import { fetchInfo, galleryImageUrl } from './api.js';
import { CompareView } from './compare.js';
import { DiffusionPanel } from './diffusion.js';
import { GalleryView } from './gallery.js';
import { GanPanel } from './gan.js';
import { bindShortcuts } from './input.js';
import { ModelPicker } from './models.js';
import { PromptHints } from './prompt_hints.js';
import { QueueView, generateState, progressTitle, settingsKey } from './queue.js';
import { Restorer } from './restore.js';
import { RunStore } from './runs.js';
import { $, clearErrors, showError } from './ui.js';
import { UpscaleView } from './upscale.js';
import { Socket } from './ws.js';

const runs = new RunStore((url) => URL.revokeObjectURL(url));
const promptText = () => $('prompt').value;
const engineOf = new Map(); // run id -> engine, learned from `queued` / `started` / frame metadata

let diffusion;
let gan;
let upscale;
let wasClosed = false;

const socket = new Socket({
  onState(state) {
    const conn = $('conn');
    conn.dataset.state = state;
    conn.textContent = { open: 'connected', connecting: 'connecting…', closed: 'disconnected — retrying' }[state];
    if (state === 'closed') {
      wasClosed = true;
      dropActiveRuns();
    } else if (state === 'open' && wasClosed) {
      wasClosed = false;
      clearErrors(); // what went wrong before the reconnect is stale
    }
    if (diffusion) refreshButtons();
  },
  onEvent(ev) {
    if (ev.type === 'models_changed') { // a model was loaded (from this page or another): re-read what is loaded
      loadInfo({ keep: true }).then(() => {
        picker.refresh();
        refreshButtons();
      });
      return;
    }
    if (ev.engine && ev.run_id) engineOf.set(ev.run_id, ev.engine);
    if (ev.type === 'error') showError(ev.message || 'unknown error', ev.code);
    if (upscale.onEvent(ev)) { // an upscale this page asked for: its own panel shows it
      if (ev.type === 'done') gallery.refresh();
      return;
    }
    const engine = engineOf.get(ev.run_id) ?? ev.engine;
    if (engine === 'gan') gan.onEvent(ev);
    else if (engine === 'diffusion' || ev.run_id || ev.ref) diffusion.onEvent(ev); // refs are Generate's
    if (ev.type === 'done') {
      gallery.refresh();
      showComparison();
    }
    refreshButtons();
  },
  onFrame(frame) {
    if (upscale.onFrame(frame)) return;
    const engine = frame.meta.engine ?? engineOf.get(frame.meta.run_id) ?? 'diffusion';
    if (engine === 'gan') gan.onFrame(frame);
    else diffusion.onFrame(frame);
  },
});

diffusion = new DiffusionPanel(socket, runs);
gan = new GanPanel(socket, runs, promptText);
upscale = new UpscaleView(socket);
const restorer = new Restorer({ diffusion, gan, onApplied: () => refreshButtons() });
restorer.install($('open-png-file'));
$('open-png').addEventListener('click', () => $('open-png-file').click());
const gallery = new GalleryView(
  (item) => restorer.apply({ ...item, source: 'gallery' }, `gallery image ${item.id}`),
  (item, inpaint) => diffusion.useAsInit(galleryImageUrl(item), `gallery image ${item.id}`, inpaint),
  (item) => {
    diffusion.variations(item, `gallery image ${item.id.slice(-8)}`);
    refreshButtons();
  },
  (item) => upscale.upscaleItem(item),
);

const compare = new CompareView($('compare'), $('compare-caption'));
const newestDone = (engine) => runs.list(engine).filter((r) => r.status === 'done').at(-1) ?? null;
function showComparison() {
  compare.render(newestDone('diffusion'), newestDone('gan'));
}

/** The server cancels a page's runs when its socket closes; show them as stopped. */
function dropActiveRuns() {
  diffusion.forgetPending();
  const active = [...runs.runs.values()].filter((r) => r.active);
  if (!active.length) return;
  for (const run of active) run.status = 'cancelled';
  showError('Connection to the server lost: running jobs were stopped.');
  diffusion.render();
  gan.show();
  refreshButtons();
}

const queue = new QueueView($('queue'), $('queue-list'), {
  cancel: (id) => diffusion.cancel(id),
  view: (id) => diffusion.show(id),
});

/** Cancel, Generate, the queue list and the tab title follow the runs and the settings. */
function refreshButtons() {
  const busy = Boolean(diffusion.activeRun) || runs.list('gan').some((r) => r.active);
  $('cancel').disabled = !busy;
  const key = settingsKey(diffusion.params(promptText(), $('negative_prompt').value));
  const state = generateState({ sending: diffusion.sending, activeKeys: diffusion.activeKeys(), key });
  const button = $('generate');
  button.textContent = state.label;
  button.disabled = state.disabled;
  $('generate-hint').textContent = state.hint;
  const list = runs.list('diffusion');
  queue.render(list, diffusion.viewed, (id) => runs.get(id)?.number);
  document.title = progressTitle(list.find((r) => r.status === 'running'));
}

function generate() {
  diffusion.generate(promptText(), $('negative_prompt').value);
  refreshButtons();
}

/** Stop the run on screen (the queue list cancels any other); the GAN's renders too. */
function cancelShown() {
  diffusion.cancel();
  gan.cancel();
}

$('generate').addEventListener('click', generate);
$('both').addEventListener('click', () => {
  const sent = diffusion.generate(promptText(), $('negative_prompt').value);
  refreshButtons();
  if (!sent) return;
  if (gan.loaded) gan.request(1);
  else showError('no GAN model loaded: ran Diffusion only');
});
$('cancel').addEventListener('click', cancelShown);
bindShortcuts(document, [$('prompt'), $('negative_prompt')], { generate, cancel: cancelShown });
for (const id of ['prompt', 'negative_prompt', 'd-controls']) $(id).addEventListener('input', () => refreshButtons());
for (const kind of ['change', 'click']) $('d-controls').addEventListener(kind, () => refreshButtons());

/** "diffusion: sd15 · clip: vit-b-32 · gan: ffhq" (last path parts; full names in the tooltip). */
function describeModels(info) {
  const short = [];
  const full = [];
  for (const key of ['diffusion', 'clip', 'gan']) {
    const v = info[key];
    const name = typeof v === 'string' ? v : v?.name;
    if (!name) continue;
    short.push(`${key}: ${name.replace(/[\\/]+$/, '').split(/[\\/]/).pop()}`);
    full.push(`${key}: ${name}`);
  }
  return { text: short.join(' · '), title: full.join('\n') };
}

/** The banner over the page while a part runs on untrained demo weights (a loaded model lifts its part). */
function showDemoBanner(banner, parts) {
  banner.hidden = parts.length === 0;
  banner.textContent = parts.includes('diffusion')
    ? 'untrained demo weights — images are noise-shaped, not pictures'
    : `untrained demo weights (${parts.join(', ')}) — CLIP guidance and scores mean nothing`;
}

/** Read /api/info and apply it; `keep` (after a model swap): the panels keep the page's settings. */
async function loadInfo({ keep = false } = {}) {
  try {
    const info = await fetchInfo();
    showDemoBanner($('demo-banner'), info.demo_parts ?? []);
    const models = describeModels(info);
    $('models').textContent = models.text;
    $('models').title = models.title;
    diffusion.applyInfo(info, { keep });
    gan.applyInfo(info, { keep });
    upscale.applyInfo(info);
    compare.setMeasured(info.measured);
    showComparison();
  } catch (err) {
    showError(`Could not read /api/info: ${err.message}`);
    gan.setLoaded(false, 'no GAN model loaded');
  }
}

const picker = new ModelPicker(
  { box: $('model-picker'), select: $('model-pick'), button: $('model-load'), status: $('model-status') },
  {
    async onLoaded() {
      await loadInfo({ keep: true });
      picker.refresh();
      refreshButtons();
    },
    onError: (message) => showError(message),
  },
);

new PromptHints($('prompt'), 'prompt');
new PromptHints($('negative_prompt'), 'negative prompt');
socket.connect();
loadInfo();
picker.refresh();
gallery.refresh();
refreshButtons();
window.noisescope = { socket, runs, diffusion, gan, gallery, compare, restorer, queue, upscale, picker };
