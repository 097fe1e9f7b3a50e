// Wires the socket, the two panels and the gallery together.
//   protocol.js  binary frame codec (docs/protocol.md)     ws.js        the one websocket client
//   api.js       HTTP: info, uploads, gallery               runs.js      per-run frame caches and forks
//   specs.js     control specs and message params           controls.js  specs -> inputs
//   diffusion.js / gan.js / gallery.js  the three areas      plot.js, ui.js  drawing and DOM helpers
//   compare.js   the side-by-side table (live and measured figures)
import { fetchInfo } from './api.js';
import { CompareView } from './compare.js';
import { DiffusionPanel } from './diffusion.js';
import { GalleryView } from './gallery.js';
import { GanPanel } from './gan.js';
import { PromptHints } from './prompt_hints.js';
import { RunStore } from './runs.js';
import { $, showError } from './ui.js';
import { Socket } from './ws.js';

const runs = new RunStore((url) => URL.revokeObjectURL(url));
const promptText = () => $('prompt').value;
const engineOf = new Map(); // run id -> engine, learned from `queued` / `started` / frame metadata

let diffusion;
let gan;

const socket = new Socket({
  onState(state) {
    const conn = $('conn');
    conn.dataset.state = state;
    conn.textContent = { open: 'connected', connecting: 'connecting…', closed: 'disconnected — retrying' }[state];
    if (state === 'closed') dropActiveRuns();
  },
  onEvent(ev) {
    if (ev.engine && ev.run_id) engineOf.set(ev.run_id, ev.engine);
    if (ev.type === 'error') showError(ev.message || 'unknown error', ev.code);
    const engine = engineOf.get(ev.run_id) ?? ev.engine;
    if (engine === 'gan') gan.onEvent(ev);
    else if (engine === 'diffusion' || ev.run_id) diffusion.onEvent(ev);
    if (ev.type === 'done') {
      gallery.refresh();
      showComparison();
    }
    refreshButtons();
  },
  onFrame(frame) {
    const engine = frame.meta.engine ?? engineOf.get(frame.meta.run_id) ?? 'diffusion';
    if (engine === 'gan') gan.onFrame(frame);
    else diffusion.onFrame(frame);
  },
});

diffusion = new DiffusionPanel(socket, runs);
gan = new GanPanel(socket, runs, promptText);
const gallery = new GalleryView((item) => {
  const params = item.params || {};
  if (typeof params.prompt === 'string') $('prompt').value = params.prompt;
  if (item.engine === 'gan') {
    gan.applySettings(params, item.seed);
  } else {
    $('negative_prompt').value = params.negative_prompt ?? '';
    diffusion.applySettings(params, item.seed);
  }
});

const compare = new CompareView($('compare'), $('compare-caption'));
const newestDone = (engine) => runs.list(engine).filter((r) => r.status === 'done').at(-1) ?? null;
function showComparison() {
  compare.render(newestDone('diffusion'), newestDone('gan'));
}

/** The server cancels a page's runs when its socket closes; show them as stopped. */
function dropActiveRuns() {
  const active = [...runs.runs.values()].filter((r) => r.active);
  if (!active.length) return;
  for (const run of active) run.status = 'cancelled';
  showError('Connection to the server lost: running jobs were stopped.');
  diffusion.render();
  gan.show();
  refreshButtons();
}

function refreshButtons() {
  const busy = Boolean(diffusion.activeRun) || runs.list('gan').some((r) => r.active);
  $('cancel').disabled = !busy;
}

$('generate').addEventListener('click', () => diffusion.generate(promptText(), $('negative_prompt').value));
$('both').addEventListener('click', () => {
  if (!diffusion.generate(promptText(), $('negative_prompt').value)) return;
  if (gan.loaded) gan.request(1);
  else showError('no GAN model loaded: ran Diffusion only');
});
$('cancel').addEventListener('click', () => {
  diffusion.cancel();
  gan.cancel();
});
$('prompt').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) $('generate').click();
});

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

async function loadInfo() {
  try {
    const info = await fetchInfo();
    $('demo-banner').hidden = !info.demo;
    const models = describeModels(info);
    $('models').textContent = models.text;
    $('models').title = models.title;
    diffusion.applyInfo(info);
    gan.applyInfo(info);
    compare.setMeasured(info.measured);
    showComparison();
  } catch (err) {
    showError(`Could not read /api/info: ${err.message}`);
    gan.setLoaded(false, 'no GAN model loaded');
  }
}

new PromptHints($('prompt'), 'prompt');
new PromptHints($('negative_prompt'), 'negative prompt');
socket.connect();
loadInfo();
gallery.refresh();
window.noisescope = { socket, runs, diffusion, gan, gallery, compare };
