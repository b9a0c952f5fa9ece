// rtavatar page: WebRTC to the server (microphone up, avatar audio + video down), a data
// channel for control. Plain JS, no build step, nothing from a CDN.
"use strict";
const $ = (id) => document.getElementById(id);
const CONTROLS = [["smile", -1, 1.5, 0.1, 0.05], ["brow_raise", -1, 1, 0, 0.05], ["eye_open_l", 0, 1.5, 1, 0.05],
                  ["eye_open_r", 0, 1.5, 1, 0.05], ["yaw", -25, 25, 0, 1], ["pitch", -15, 15, 0, 1], ["roll", -10, 10, 0, 1]];
let pc = null, channel = null, session = null, statsTimer = null;
// With `rtavatar serve --token T`, open the page as /?token=T: it sends T on every /v1/ call.
const TOKEN = new URLSearchParams(location.search).get("token");
const auth = () => (TOKEN ? {Authorization: `Bearer ${TOKEN}`} : {});

function error(msg) { $("error").textContent = msg || ""; }
function showState(s) { const b = $("state"); b.textContent = s; b.className = "badge " + s; }

async function init() {
  const h = await (await fetch("/healthz")).json();
  $("model").textContent = `${h.model} · ${h.resolution}px · ${h.fps} fps`;
  const list = (await (await fetch("/v1/portraits", {headers: auth()})).json()).portraits;
  for (const name of list) { const o = document.createElement("option"); o.value = name; o.textContent = name; $("bundled").append(o); }
  for (const [name, lo, hi, val, step] of CONTROLS) {
    const l = document.createElement("label");
    l.innerHTML = `<span>${name}</span><input type="range" min="${lo}" max="${hi}" step="${step}" value="${val}" data-control="${name}"><output>${val}</output>`;
    const input = l.querySelector("input");
    input.addEventListener("input", () => {
      l.querySelector("output").textContent = input.value;
      send({type: "expression", expression: {[name]: parseFloat(input.value)}});
    });
    $("sliders").append(l);
  }
}

function send(obj) { if (channel && channel.readyState === "open") channel.send(JSON.stringify(obj)); }

async function portraitField() {
  const f = $("upload").files[0];
  if (!f) return "bundled:" + $("bundled").value;
  const buf = new Uint8Array(await f.arrayBuffer());
  let s = ""; for (let i = 0; i < buf.length; i += 0x8000) s += String.fromCharCode.apply(null, buf.subarray(i, i + 0x8000));
  return btoa(s);
}

async function start() {
  error(""); $("start").disabled = true;
  try {
    pc = new RTCPeerConnection();
    let mic = null;
    try { mic = await navigator.mediaDevices.getUserMedia({audio: true}); } catch (e) { error("no microphone: " + e.message); }
    if (mic) for (const t of mic.getAudioTracks()) pc.addTrack(t, mic);
    else pc.addTransceiver("audio", {direction: "recvonly"});
    pc.addTransceiver("video", {direction: "recvonly"});
    const remote = new MediaStream();
    pc.ontrack = (ev) => { remote.addTrack(ev.track); $("avatar").srcObject = remote; };
    channel = pc.createDataChannel("control");
    channel.onopen = () => send({type: "stats"});
    channel.onmessage = (ev) => {
      const m = JSON.parse(ev.data);
      if (m.type === "state") showState(m.state);
      else if (m.type === "user") $("mic").textContent = m.speaking ? "speaking" : "quiet";
      else if (m.type === "error") error(m.error);
      else if (m.type === "stats" && (m.state && showState(m.state), true)) $("stats").textContent =
        `first frame ${m.first_frame_ms ? m.first_frame_ms.toFixed(0) : "-"} ms\ngen ${m.gen_fps ?? "-"} fps · shown ${fps()} fps\nstall ${m.stall_ms} ms`;
    };
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((r) => { if (pc.iceGatheringState === "complete") r(); else pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && r(); });
    const r = await fetch("/v1/webrtc/offer", {method: "POST", headers: {"Content-Type": "application/json", ...auth()},
      body: JSON.stringify({sdp: pc.localDescription.sdp, type: "offer", portrait: await portraitField(), paste: {back: $("paste").checked}})});
    const ans = await r.json().catch(() => ({}));  // an error page that is not JSON still gets a readable message
    if (!r.ok) throw new Error(ans.error || `offer refused: HTTP ${r.status} ${r.statusText}`);
    session = ans.session;
    await pc.setRemoteDescription({sdp: ans.sdp, type: ans.type});
    showState("idle");
    for (const id of ["stop", "say", "interrupt"]) $(id).disabled = false;
    statsTimer = setInterval(() => send({type: "stats"}), 1000);
  } catch (e) { error(String(e.message || e)); release(); $("start").disabled = false; }
}

let lastFrames = 0, lastT = performance.now();
function fps() {
  const v = $("avatar"); const q = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality().totalVideoFrames : 0;
  const now = performance.now(); const f = ((q - lastFrames) * 1000 / (now - lastT)).toFixed(1); lastFrames = q; lastT = now; return f;
}

function release() {  // the connection and the microphone (closing the connection leaves the mic captured)
  clearInterval(statsTimer);
  if (pc) { for (const s of pc.getSenders()) if (s.track) s.track.stop(); pc.close(); }
  pc = null; channel = null; session = null;
}

function stop() {
  release();
  showState("not started"); $("start").disabled = false; for (const id of ["stop", "say", "interrupt"]) $(id).disabled = true;
}

async function sayFile() {
  const f = $("audio").files[0]; if (!f || session === null) return;
  const form = new FormData(); form.append("audio", f);
  const r = await fetch(`/v1/webrtc/${session}/audio`, {method: "POST", body: form, headers: auth()});
  if (!r.ok) error((await r.json().catch(() => ({}))).error || `HTTP ${r.status}`);
}

$("start").onclick = start;
$("stop").onclick = stop;
$("say").onclick = () => send({type: "say", text: $("text").value});
$("interrupt").onclick = () => send({type: "interrupt"});
$("audio").onchange = sayFile;
for (const b of document.querySelectorAll("#state-buttons button")) b.onclick = () => {
  for (const o of document.querySelectorAll("#state-buttons button")) o.classList.toggle("on", o === b);
  send({type: "state", state: b.dataset.state});
};
init().catch((e) => error(String(e)));
