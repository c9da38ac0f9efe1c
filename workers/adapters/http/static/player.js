// The console's player: speed, keyboard seeking and, for two-channel recordings, hearing
// the customer, the agent or both (Web Audio routes the chosen channel to both ears).
"use strict";
(() => {
  const audio = document.getElementById("player");
  if (!audio) return;
  const speed = document.getElementById("speed");
  const rates = Array.from(speed.options, (o) => Number(o.value));

  function setRate(rate) {
    audio.playbackRate = rate;
    speed.value = String(rate);
  }
  speed.addEventListener("change", () => setRate(Number(speed.value)));

  function stepRate(direction) {
    const at = rates.indexOf(audio.playbackRate);
    const next = Math.min(rates.length - 1, Math.max(0, (at < 0 ? rates.indexOf(1) : at) + direction));
    setRate(rates[next]);
  }

  function seekTo(seconds) {
    const end = Number.isFinite(audio.duration) ? audio.duration : seconds;
    audio.currentTime = Math.min(Math.max(0, seconds), end);
  }

  const keys = {
    " ": () => (audio.paused ? audio.play() : audio.pause()),
    k: () => (audio.paused ? audio.play() : audio.pause()),
    ArrowLeft: (e) => seekTo(audio.currentTime - (e.shiftKey ? 30 : 5)),
    ArrowRight: (e) => seekTo(audio.currentTime + (e.shiftKey ? 30 : 5)),
    j: () => seekTo(audio.currentTime - 10),
    l: () => seekTo(audio.currentTime + 10),
    Home: () => seekTo(0),
    End: () => seekTo(audio.duration),
    "<": () => stepRate(-1),
    ">": () => stepRate(1),
  };
  document.addEventListener("keydown", (event) => {
    const typing = event.target.closest && event.target.closest("input[type=text], textarea, select");
    if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
    let action = keys[event.key];
    if (!action && /^[0-9]$/.test(event.key) && Number.isFinite(audio.duration)) {
      action = () => seekTo((audio.duration * Number(event.key)) / 10);
    }
    if (!action) return;
    event.preventDefault();
    action(event);
  });

  // Two channels: the caller on the left (as rtpengine and MixMonitor write them).
  const voices = document.getElementById("voices");
  if (!voices || audio.dataset.channels !== "2") return;
  const customer = Number(audio.dataset.customerChannel);
  const level = document.getElementById("level");
  let graph = null;

  function build() {
    const context = new AudioContext();
    const source = context.createMediaElementSource(audio);
    const splitter = context.createChannelSplitter(2);
    const merger = context.createChannelMerger(2);
    const analyser = context.createAnalyser();
    analyser.fftSize = 1024;
    source.connect(splitter);
    merger.connect(analyser);
    analyser.connect(context.destination);
    const samples = new Float32Array(analyser.fftSize);
    setInterval(() => {
      analyser.getFloatTimeDomainData(samples);
      level.value = Math.min(1, Math.sqrt(samples.reduce((s, x) => s + x * x, 0) / samples.length) * 4);
    }, 100);
    return { context, splitter, merger };
  }

  function route(voice) {
    graph = graph || build();
    const { context, splitter, merger } = graph;
    splitter.disconnect();
    if (voice === "both") {
      splitter.connect(merger, 0, 0);
      splitter.connect(merger, 1, 1);
    } else {
      const channel = voice === "customer" ? customer : 1 - customer;
      splitter.connect(merger, channel, 0);
      splitter.connect(merger, channel, 1);
    }
    if (context.state === "suspended") context.resume();
  }
  voices.addEventListener("change", (event) => route(event.target.value));
  audio.addEventListener("play", () => route(voices.querySelector("input:checked").value), { once: true });
})();
