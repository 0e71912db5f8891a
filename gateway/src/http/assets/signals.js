// Auditory alarm signals after IEC 60601-1-8 (edition 2006: Table 3, the
// burst; Table 4, the pulse), synthesised with the Web Audio API — no audio
// files. This file owns how each priority sounds; alerting.js decides which
// one sounds. The figures and where they come from are in docs/http.md
// ("Alarm signals"); keep the two in step.
//
// Timing conventions used here: a pulse's duration td runs between the 50 %
// points of its rise and its fall; pulse spacing runs from the 50 % point of a
// fall to that of the next rise; a ramp (linear, 0 to full) lasts `ramp` ms,
// so its 10–90 % rise time is 0.8 × ramp. The interburst interval runs from
// the end of a burst's last pulse to the start of the next burst's first.
//
// Bursts are scheduled on the audio clock up to a minute ahead, so the rhythm
// holds when a phone throttles the page's timers in the background; stopping
// disconnects every scheduled burst at once.
//
// `window.__wardgateAudio` records what was scheduled (priority, reason,
// pulse start times) so the browser test can check the signals without
// hearing them.
"use strict";

window.WardgateSignals = (() => {
  // Pulse frequency 440 Hz with harmonics 2–5 (880–2200 Hz): the standard
  // asks for 150–1000 Hz and at least 4 harmonic components in 300–4000 Hz.
  // These are 3 to 10.5 dB below the fundamental (within its ±15 dB).
  const F0 = 440;
  const PARTIALS = [1, 0.7, 0.5, 0.4, 0.3];

  // High priority: 10 pulses, "3 + 2" twice: x between pulses of a group,
  // 2x + td between the groups of 3 and 2 (one beat left out), 0.35–1.30 s
  // between the two halves.
  const X = 100, TD_HIGH = 150;
  const SIGNALS = {
    high: {
      td: TD_HIGH, ramp: 25,
      gaps: [X, X, 2 * X + TD_HIGH, X, 500, X, X, 2 * X + TD_HIGH, X],
      interburst: 3000,
    },
    medium: { td: 200, ramp: 30, gaps: [200, 200], interburst: 5000 },
    low: { td: 200, ramp: 30, gaps: [200], interburst: 30000 },
  };
  const LEAD = 0.05; // s between scheduling and the first ramp
  const HORIZON = 60; // s of bursts kept scheduled ahead
  const TOP_UP_MS = 10000;
  const VOLUME = 0.35;

  // Pulse starts (50 % of the rise) in ms from the first, and the burst's length.
  function plan(s) {
    const starts = [0];
    for (const gap of s.gaps) starts.push(starts[starts.length - 1] + s.td + gap);
    return { starts, length: starts[starts.length - 1] + s.td };
  }

  const hook = { enabled: false, contextState: "none", current: null, bursts: [] };
  window.__wardgateAudio = hook;

  let ctx = null, master = null, wave = null;
  let wanted = null; // {priority, reason} that should sound, enabled or not
  let playing = null; // {priority, run, next (ctx s), bursts: [{env, end, record}], timer}
  let runs = 0; // signals started: the hook's `run` tells one from the next

  function context() {
    if (ctx) return ctx;
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return null;
    ctx = new Ctx();
    master = ctx.createGain();
    master.gain.value = VOLUME;
    master.connect(ctx.destination);
    const imag = new Float32Array([0, ...PARTIALS]);
    wave = ctx.createPeriodicWave(new Float32Array(imag.length), imag);
    ctx.addEventListener("statechange", () => { hook.contextState = ctx.state; });
    return ctx;
  }

  // One burst starting (first ramp) at `t0` on the audio clock.
  function burst(priority, run, reason, t0) {
    const s = SIGNALS[priority];
    const { starts, length } = plan(s);
    const osc = ctx.createOscillator();
    osc.setPeriodicWave(wave);
    osc.frequency.value = F0;
    const env = ctx.createGain();
    env.gain.value = 0;
    osc.connect(env).connect(master);
    const ramp = s.ramp / 1000, first = t0 + ramp / 2;
    for (const start of starts) {
      const rise = first + start / 1000 - ramp / 2, fall = first + (start + s.td) / 1000 - ramp / 2;
      env.gain.setValueAtTime(0, rise);
      env.gain.linearRampToValueAtTime(1, rise + ramp);
      env.gain.setValueAtTime(1, fall);
      env.gain.linearRampToValueAtTime(0, fall + ramp);
    }
    const end = first + (length + s.ramp / 2) / 1000;
    osc.start(t0);
    osc.stop(end);
    const record = {
      priority, run, reason, pulses: starts.length, starts, td: s.td, ramp: s.ramp,
      interburst: s.interburst, at: first,
      wall: Date.now() + (first - ctx.currentTime) * 1000, stopped: null,
    };
    hook.bursts.push(record);
    if (hook.bursts.length > 200) hook.bursts.splice(0, hook.bursts.length - 200);
    osc.onended = () => env.disconnect();
    return { env, end, record, next: first + (length + s.interburst) / 1000 - ramp / 2 };
  }

  function topUp() {
    if (!playing) return;
    const until = ctx.currentTime + HORIZON;
    playing.bursts = playing.bursts.filter((b) => b.end > ctx.currentTime);
    while (playing.next < until) {
      const b = burst(playing.priority, playing.run, wanted.reason, playing.next);
      playing.bursts.push(b);
      playing.next = b.next;
    }
  }

  function stop() {
    if (!playing) return;
    clearInterval(playing.timer);
    const now = Date.now();
    for (const b of playing.bursts) {
      b.env.disconnect();
      if (b.end > ctx.currentTime) b.record.stopped = now;
    }
    playing = null;
  }

  // Makes the sound follow `wanted`: the same priority keeps its rhythm (only
  // the reason recorded for later bursts changes), another starts afresh.
  function apply() {
    hook.current = wanted && { ...wanted };
    if (!hook.enabled || !wanted) { stop(); return; }
    if (playing && playing.priority === wanted.priority) return;
    stop();
    runs += 1;
    playing = { priority: wanted.priority, run: runs, next: ctx.currentTime + LEAD, bursts: [], timer: null };
    topUp();
    playing.timer = setInterval(topUp, TOP_UP_MS);
  }

  // A phone may suspend audio while the page is hidden; resume on return.
  document.addEventListener("visibilitychange", () => {
    if (hook.enabled && ctx && document.visibilityState === "visible") ctx.resume();
  });

  return {
    supported: () => !!(window.AudioContext || window.webkitAudioContext),
    enabled: () => hook.enabled,
    // Only from a user gesture: browsers start audio on one.
    async enable() {
      if (!context()) return false;
      await ctx.resume();
      hook.contextState = ctx.state;
      hook.enabled = true;
      apply();
      return true;
    },
    disable() {
      hook.enabled = false;
      apply();
      if (ctx) ctx.suspend();
    },
    // `signal`: {priority, reason} or null for silence.
    play(signal) {
      wanted = signal && SIGNALS[signal.priority] ? signal : null;
      apply();
    },
  };
})();
