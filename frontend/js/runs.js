// Per-run caches: every received preview by step, per-step stats, and fork ancestry, so an
// earlier branch stays viewable after a `rewind`. No DOM here.

const MAX_RUNS = 16;

export class Run {
  constructor(id, engine, { parent = null, fromStep = 0, number = 0 } = {}) {
    this.id = id;
    this.number = number; // 1, 2, ... per engine, in the order the page heard of them ("#3")
    this.engine = engine;
    this.parent = parent;
    this.fromStep = fromStep;
    this.total = 0;
    this.index = 0;
    this.seed = null;
    this.status = 'queued'; // queued | running | done | cancelled | error
    this.position = null; // place in the server's waiting line while queued (0 = next)
    this.key = null; // settingsKey of the generate that queued it (queue.js)
    this.frames = new Map(); // step -> {url, meta, kind}
    this.stats = new Map(); // step index -> {sigma, clip_score, elapsed_ms}
    this.elapsedMs = 0;
    this.clipScore = null;
    this.diversity = null; // of a finished batch or grid
    this.images = 1; // images in the finished batch or grid
    this.batch = 1; // images the run makes (its params' batch)
    this.imageIds = []; // gallery ids of the finished images, in batch order
    this.picked = 0; // which of them "variations" and "send to init image" take
    this.params = null; // the starting values `done` reports
    this.lineage = null; // a fork's parent, a variation's source image and strength
    this.label = null; // what the queue calls a run that is not a plain Generate ("variations of …")
    this.prompt = null;
    this.imageId = null;
    this.createdAt = Date.now();
  }

  get active() {
    return this.status === 'queued' || this.status === 'running';
  }
}

export class RunStore {
  /** @param {(url: string) => void} revoke  frees a frame's object URL when its run is evicted */
  constructor(revoke = () => {}) {
    this.runs = new Map();
    this.revoke = revoke;
    this.counters = {}; // engine -> runs numbered so far
  }

  get(id) {
    return this.runs.get(id);
  }

  /** Register a run (idempotent); evicts the oldest finished runs beyond the cap. */
  add(id, engine, opts = {}) {
    let run = this.runs.get(id);
    if (!run) {
      this.counters[engine] = (this.counters[engine] ?? 0) + 1;
      run = new Run(id, engine, { ...opts, number: this.counters[engine] });
      this.runs.set(id, run);
      this.#evict();
    } else {
      if (opts.parent) run.parent = opts.parent;
      if (opts.fromStep) run.fromStep = opts.fromStep;
    }
    return run;
  }

  /** Runs of one engine in creation order. */
  list(engine) {
    return [...this.runs.values()].filter((r) => r.engine === engine);
  }

  /** Store a frame; replaces (and frees) an older one at the same step. */
  putFrame(runId, step, frame) {
    const run = this.runs.get(runId);
    if (!run) {
      this.revoke(frame.url);
      return null;
    }
    const old = run.frames.get(step);
    if (old && old.url !== frame.url) this.revoke(old.url);
    run.frames.set(step, frame);
    return run;
  }

  /** The run that owns `step` of `runId`'s timeline: a fork shares its parent's earlier steps. */
  owner(runId, step) {
    let run = this.runs.get(runId);
    while (run && run.parent && step <= run.fromStep && this.runs.has(run.parent)) run = this.runs.get(run.parent);
    return run;
  }

  /** The frame shown for `step` of `runId`, or null when none was received. */
  frame(runId, step) {
    return this.owner(runId, step)?.frames.get(step) ?? null;
  }

  /** The latest frame at or before `step` (what to show while an exact one is being fetched). */
  nearestFrame(runId, step) {
    for (let s = step; s >= 0; s -= 1) {
      const f = this.frame(runId, s);
      if (f) return f;
    }
    return null;
  }

  /** Per-step stats along the run's ancestry: [{step, sigma, clip_score}], sorted. */
  series(runId) {
    const run = this.runs.get(runId);
    if (!run) return [];
    const out = new Map();
    for (const [step, s] of run.stats) out.set(step, s);
    if (run.parent) {
      for (const p of this.series(run.parent)) if (p.step <= run.fromStep && !out.has(p.step)) out.set(p.step, p);
    }
    return [...out.entries()].map(([step, s]) => ({ ...s, step })).sort((a, b) => a.step - b.step);
  }

  #evict() {
    const removable = [...this.runs.values()].filter((r) => !r.active);
    while (this.runs.size > MAX_RUNS && removable.length) {
      const run = removable.shift();
      for (const f of run.frames.values()) this.revoke(f.url);
      this.runs.delete(run.id);
    }
  }
}
