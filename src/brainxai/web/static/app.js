// brainxai page. Plain JavaScript, no build step, nothing loaded from elsewhere.
// Every value from the server is put in the page with textContent, never as HTML.
"use strict";

const CLASS_TITLES = { glioma: "Glioma", meningioma: "Meningioma", notumor: "No tumour", pituitary: "Pituitary tumour" };
const METHOD_TITLES = {
  lrp: "LRP", gradcam: "Grad-CAM", "gradcam++": "Grad-CAM++", hirescam: "HiRes-CAM", "guided-gradcam": "Guided Grad-CAM",
};
const IMAGE_KINDS = ["original", "heatmap", "tumour", "overlay", "outline", "mask"];
const SOURCE_TITLES = { segmentation: "measured on the segmented tumour", relevance: "measured on the relevance region" };
const STATUS_TITLES = { measured: "measured", estimated: "estimate", not_assessable: "not assessable" };

const $ = (id) => document.getElementById(id);
const state = { user: null, health: null, singleFile: null, batchFiles: [], batchTimer: null, patientId: null };

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else if (key === "style") node.style.cssText = value;  // CSSOM: allowed by the CSP, unlike style attributes
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function pct(x) { return `${(100 * x).toFixed(1)} %`; }
function when(iso) { return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" }); }
function fmtValue(v) {
  if (typeof v === "number") {
    if (Number.isInteger(v)) return String(v);
    const text = v.toPrecision(4);  // strip trailing zeros of a fraction only, never of "1230"
    return text.includes(".") && !text.includes("e") ? text.replace(/\.?0+$/, "") : text;
  }
  if (v === null || v === undefined) return "—";
  if (Array.isArray(v)) return v.map(fmtValue).join(" × ");
  return String(v);
}
function showError(id, message) { const node = $(id); node.textContent = message; node.hidden = !message; }

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  let body = null;
  const type = response.headers.get("content-type") || "";
  if (type.includes("application/json")) body = await response.json();
  if (response.status === 401 && !path.startsWith("/api/auth/")) showLogin();
  if (!response.ok) {
    const message = body && body.message ? body.message : `${response.status} ${response.statusText}`;
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return body;
}

// --- server status -------------------------------------------------------------------------------

async function refreshHealth() {
  const box = $("server-status");
  try {
    const h = await api("/api/health");
    state.health = h;
    const model = h.model.loaded ? h.model.name : "model not loaded";
    const device = h.device ? h.device.type.toUpperCase() : "—";
    $("server-status-text").textContent = `${model} · ${device}`;
    box.className = `status status-${h.status === "ok" ? "ok" : "degraded"}`;
    box.title = h.model.loaded
      ? `Model ${h.model.name} (sha256 ${String(h.model.sha256).slice(0, 12)}…) on ${h.device.name}; queue ${h.queue.pending}`
      : `Model not loaded: ${h.model.error || "unknown error"}`;
    $("version").textContent = `version ${h.version}`;
    for (const span of document.querySelectorAll(".max-mb")) span.textContent = h.limits.max_upload_mb;
    for (const span of document.querySelectorAll(".max-files")) span.textContent = h.limits.max_batch_files;
    fillMethods(h.methods);
    showSetup(h);
  } catch (err) {
    box.className = "status status-down";
    $("server-status-text").textContent = "Server unreachable";
  }
}

function fillMethods(methods) {
  const select = $("method");
  const current = select.value;
  if (select.options.length === methods.length) return;
  select.replaceChildren(...methods.map((m) => el("option", { value: m, text: METHOD_TITLES[m] || m })));
  if (methods.includes(current)) select.value = current;
}

// --- login ---------------------------------------------------------------------------------------

// No account yet: nobody can log in, so the login form says how to create the first one.
function showSetup(h) {
  const node = $("login-setup");
  node.hidden = !h.needs_setup;
  if (h.needs_setup) {
    node.replaceChildren("No account exists yet. Create one on the server with ", el("code", { text: h.setup_command }),
      ", then sign in.");
  }
}

function showLogin() {
  state.user = null;
  $("app-view").hidden = true;
  $("user-box").hidden = true;
  $("login-view").hidden = false;
  $("login-user").focus();
}

function showApp(user) {
  state.user = user;
  $("user-name").textContent = user.is_admin ? `${user.username} (admin)` : user.username;
  $("user-box").hidden = false;
  $("login-view").hidden = true;
  $("app-view").hidden = false;
}

async function login(event) {
  event.preventDefault();
  showError("login-error", "");
  try {
    const user = await api("/api/auth/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username: $("login-user").value, password: $("login-password").value }),
    });
    $("login-password").value = "";
    showApp(user);
  } catch (err) {
    showError("login-error", err.message);
  }
}

async function logout() {
  try { await api("/api/auth/logout", { method: "POST" }); } catch (err) { /* already logged out */ }
  showLogin();
}

// --- tabs ----------------------------------------------------------------------------------------

function selectTab(name) {
  for (const tab of document.querySelectorAll(".tab")) {
    const active = tab.dataset.tab === name;
    tab.classList.toggle("active", active);
    tab.setAttribute("aria-selected", String(active));
  }
  for (const panel of document.querySelectorAll(".tab-panel")) panel.hidden = panel.dataset.panel !== name;
  $("setup").hidden = name === "history";
  if (name === "history") loadPatients();
}

// --- uploads -------------------------------------------------------------------------------------

function setupDropzone(zoneId, inputId, onFiles) {
  const zone = $(zoneId);
  const input = $(inputId);
  zone.addEventListener("click", () => input.click());
  zone.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); } });
  input.addEventListener("change", () => onFiles([...input.files]));
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("drag"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("drag"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("drag");
    onFiles([...e.dataTransfer.files]);
  });
}

function patientForm(form) {
  const fields = {
    patient_code: $("patient-code").value.trim(),
    patient_name: $("patient-name").value.trim(),
    patient_birth_date: $("patient-birth").value,
    patient_sex: $("patient-sex").value,
  };
  for (const [key, value] of Object.entries(fields)) if (value) form.append(key, value);
  form.append("method", $("method").value || "lrp");
  return form;
}

async function analyzeSingle() {
  if (!state.singleFile) return;
  showError("single-error", "");
  $("analyze").disabled = true;
  $("single-busy").hidden = false;
  try {
    const form = patientForm(new FormData());
    form.append("file", state.singleFile, state.singleFile.name);
    const study = await api("/api/analyze", { method: "POST", body: form });
    renderStudy(study);
  } catch (err) {
    showError("single-error", err.message);
  } finally {
    $("analyze").disabled = false;
    $("single-busy").hidden = true;
  }
}

// --- result --------------------------------------------------------------------------------------

function renderStudy(study) {
  $("result").hidden = false;
  const tumour = study.prediction !== "notumor";
  // Out of domain (in_domain === false): the model output stays visible, marked as not assessable.
  const assessable = study.result.in_domain !== false;
  $("result").querySelector(".result-head").classList.toggle("tumour", tumour);
  $("result").querySelector(".result-head").classList.toggle("not-assessable", !assessable);
  $("prediction").textContent = assessable ? study.prediction_title : "Outside what this model was trained on: not assessable";
  $("confidence").textContent = assessable
    ? `Model probability ${pct(study.confidence)}`
    : `Model output, not assessable (for reference only): ${study.prediction_title}, ${pct(study.confidence)}`;
  const parts = [study.source_name, METHOD_TITLES[study.method] || study.method, when(study.created_at)];
  if (study.patient) parts.unshift(`Patient ${study.patient.code}${study.patient.name ? " · " + study.patient.name : ""}`);
  if (study.model && study.model.name) parts.push(`model ${study.model.name}`);
  $("study-meta").textContent = parts.join(" · ");

  const classes = Object.keys(study.probabilities);
  $("prob-bars").replaceChildren(...classes.map((c) => {
    const p = study.probabilities[c];
    return el("div", { class: `bar-row${c === study.prediction ? " top" : ""}`, "data-class": c }, [
      el("span", { text: CLASS_TITLES[c] || c }),
      el("div", { class: "bar-track" }, [el("div", { class: "bar-fill", style: `width:${(100 * p).toFixed(1)}%` })]),
      el("span", { class: "bar-value", text: pct(p) }),
    ]);
  }));

  // What each parameter is measured on (segmented tumour or relevance region) is in the library's result.
  const sources = Object.fromEntries((study.result.spatial_parameters || []).map((p) => [p.key, p.source]));
  const rows = study.spatial_parameters.map((sp) => {
    const value = sp.text || `${fmtValue(sp.value)}${sp.unit ? " " + sp.unit : ""}`;
    const valueCell = el("td", {}, [el("div", { text: value })]);
    const source = SOURCE_TITLES[sources[sp.key]];
    if (source) valueCell.append(el("div", { class: "hint", text: source }));
    if (sp.method) valueCell.append(el("details", {}, [el("summary", { text: "How it is derived" }), el("p", { text: sp.method })]));
    const kind = STATUS_TITLES[sp.status] || sp.status || "";
    return el("tr", {}, [
      el("td", { text: sp.name }),
      valueCell,
      el("td", {}, kind ? [el("span", { class: `pill status-${sp.status}`, text: kind })] : []),
    ]);
  });
  if (!rows.length) rows.push(el("tr", {}, [el("td", { colspan: "3", text: "No spatial parameters for this result." })]));
  $("spatial").querySelector("tbody").replaceChildren(...rows);

  const warnings = study.result.warnings || [];
  $("result-warnings").replaceChildren(...warnings.map((w) => el("li", { text: `Warning: ${w}` })));
  $("result-warnings").hidden = !warnings.length;

  const notes = [...(study.result.notes || [])];
  if (study.result.agreement_method && study.result.agreement && study.result.agreement.iou != null) {
    notes.push(`Agreement: ${study.result.agreement_method} = ${fmtValue(study.result.agreement.iou)}`);
  }
  $("notes").replaceChildren(...notes.map((n) => el("li", { text: n })));

  const g = assessable ? study.result.guidance : null;
  $("guidance").hidden = !g;
  if (g) {
    $("guidance-title").textContent = g.title || "";
    $("guidance-summary").textContent = g.summary || "";
    $("guidance-steps").replaceChildren(...(g.steps || []).map((t) => el("li", { text: t })));
    $("guidance-caveat").textContent = g.caveat || "";
  }

  $("method-name").textContent = `· ${METHOD_TITLES[study.method] || study.method}`;
  const seg = study.result.segmentation;
  $("views-caption").textContent = seg && seg.used_for_parameters
    ? "The heatmap is the explanation (red outline: its region). Green: the tumour outlined by a separate segmentation model; the lesion figures are measured on it."
    : tumour
    ? "The region is derived from the explanation map; it is not a segmentation."
    : study.links.images.tumour
    ? "Prediction: no tumour, so no relevance region is drawn. Green: what a separate segmentation model outlined; when it is sizeable the two models disagree (see the warning)."
    : "Prediction: no tumour. No tumour region is drawn.";
  const segText = segmentationText(seg);
  $("segmentation-summary").textContent = segText;
  $("segmentation-summary").hidden = !segText;
  $("fig-tumour").hidden = !study.links.images.tumour;
  for (const kind of IMAGE_KINDS) {
    const img = $(`img-${kind}`);
    if (study.links.images[kind]) { img.src = study.links.images[kind]; img.hidden = false; }
    else { img.removeAttribute("src"); img.hidden = true; }
  }
  const pdf = $("pdf-link");
  pdf.hidden = !study.links.report_pdf;
  if (study.links.report_pdf) pdf.href = study.links.report_pdf;
  const dicom = $("dicom-link");
  dicom.hidden = !study.links.dicom_zip;
  if (study.links.dicom_zip) dicom.href = study.links.dicom_zip;
}

function segmentationText(seg) {
  // The segmented tumour in one or two sentences; empty without a segmentation model.
  if (!seg) return "";
  const model = seg.model || {};
  // Results stored before the rule was named carry only the threshold.
  const who = `segmentation model ${model.name || "?"} (${model.mask_rule || `probability ≥ ${seg.threshold}`})`;
  if (seg.status === "empty") return `Segmented tumour: none outlined by the ${who}.`;
  const assumed = seg.pixel_spacing_source === "assumed" ? ", pixel spacing assumed" : "";
  const area = seg.area_mm2 != null ? `${seg.area_mm2.toFixed(1)} mm² (${seg.area_px} px²${assumed})` : `${seg.area_px} px²`;
  const size = `${seg.max_diameter.toFixed(1)} × ${seg.perpendicular_diameter.toFixed(1)} ${seg.diameter_unit}`;
  let text = `Segmented tumour (${who}): area ${area}, maximum diameter ${size}.`;
  if (seg.relevance_in_tumour != null) {
    text += ` Relevance in tumour: ${(100 * seg.relevance_in_tumour).toFixed(0)} % of the explanation's positive relevance lies inside the outline.`;
  }
  return text;
}

async function openStudy(id) {
  try {
    const study = await api(`/api/studies/${encodeURIComponent(id)}`);
    selectTab("single");
    renderStudy(study);
    $("result").scrollIntoView({ behavior: "smooth", block: "start" });
  } catch (err) {
    showError("single-error", err.message);
  }
}

// --- batch ---------------------------------------------------------------------------------------

async function startBatch() {
  if (!state.batchFiles.length) return;
  showError("batch-error", "");
  $("batch-start").disabled = true;
  try {
    const form = patientForm(new FormData());
    for (const f of state.batchFiles) form.append("files", f, f.name);
    const job = await api("/api/batch", { method: "POST", body: form });
    renderJob(job);
    pollJob(job.id);
  } catch (err) {
    showError("batch-error", err.message);
    $("batch-start").disabled = false;
  }
}

function pollJob(id) {
  clearTimeout(state.batchTimer);
  state.batchTimer = setTimeout(async () => {
    try {
      const job = await api(`/api/batch/${encodeURIComponent(id)}`);
      renderJob(job);
      if (job.status !== "done") pollJob(id);
      else $("batch-start").disabled = false;
    } catch (err) {
      showError("batch-error", err.message);
      $("batch-start").disabled = false;
    }
  }, 700);
}

function renderJob(job) {
  $("batch-job").hidden = false;
  $("batch-progress").style.width = `${(100 * job.progress).toFixed(0)}%`;
  const state_ = job.status === "done" ? "finished" : "in progress";
  $("batch-summary").textContent =
    `${job.done + job.failed} of ${job.total} files ${state_} · ${job.done} analysed · ${job.failed} failed`;
  $("batch-rows").replaceChildren(...job.items.map((item) => {
    const s = item.study;
    const open = s ? el("button", { class: "btn-link", type: "button", text: "Open", onclick: () => openStudy(s.id) }) : "";
    return el("tr", { "data-status": item.status }, [
      el("td", { class: "num", text: String(item.position + 1) }),
      el("td", { text: item.filename }),
      el("td", {}, [el("span", { class: `pill ${item.status}`, text: item.status }),
        ...(item.error ? [el("div", { class: "hint", text: item.error })] : [])]),
      el("td", { text: s ? s.prediction_title : "" }),
      el("td", { class: "num", text: s ? pct(s.confidence) : "" }),
      el("td", {}, [open]),
    ]);
  }));
}

// --- history -------------------------------------------------------------------------------------

async function loadPatients() {
  const q = $("patient-filter").value.trim();
  try {
    const patients = await api(`/api/patients${q ? "?q=" + encodeURIComponent(q) : ""}`);
    const recent = el("li", { class: state.patientId === null ? "active" : "", onclick: () => loadStudies(null) }, [
      el("div", {}, [el("div", { class: "p-code", text: "All recent studies" })]),
    ]);
    $("patient-list").replaceChildren(recent, ...patients.map((p) => el("li", {
      class: p.id === state.patientId ? "active" : "", "data-patient": p.code, onclick: () => loadStudies(p),
    }, [
      el("div", {}, [el("div", { class: "p-code", text: p.code }), el("div", { class: "p-name", text: p.name || "" })]),
      el("div", { class: "p-count", text: `${p.study_count} ${p.study_count === 1 ? "study" : "studies"}` }),
    ])));
    if (state.patientId === null) loadStudies(null);
  } catch (err) {
    $("studies-empty").textContent = err.message;
  }
}

async function loadStudies(patient) {
  state.patientId = patient ? patient.id : null;
  for (const li of $("patient-list").children) li.classList.toggle("active", patient ? li.dataset.patient === patient.code : !li.dataset.patient);
  $("studies-title").textContent = patient ? `Studies of ${patient.code}${patient.name ? " · " + patient.name : ""}` : "All recent studies";
  const url = patient ? `/api/patients/${patient.id}/studies` : "/api/studies";
  const studies = await api(url);
  $("studies-empty").textContent = studies.length ? "" : "No studies yet.";
  $("study-rows").replaceChildren(...studies.map((s) => el("tr", { "data-study": s.id }, [
    el("td", { class: "num", text: when(s.created_at) }),
    el("td", { text: s.source_name }),
    el("td", { text: METHOD_TITLES[s.method] || s.method }),
    el("td", { text: s.prediction_title }),
    el("td", { class: "num", text: pct(s.confidence) }),
    el("td", {}, [el("button", { class: "btn-link", type: "button", text: "Open", onclick: () => openStudy(s.id) })]),
  ])));
}

// --- start ---------------------------------------------------------------------------------------

async function init() {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => selectTab(tab.dataset.tab));
  setupDropzone("drop-single", "file-single", (files) => {
    state.singleFile = files[0] || null;
    $("single-file-name").textContent = state.singleFile ? state.singleFile.name : "";
    $("analyze").disabled = !state.singleFile;
  });
  setupDropzone("drop-batch", "file-batch", (files) => {
    state.batchFiles = files;
    $("batch-file-names").textContent = files.length ? `${files.length} files: ${files.map((f) => f.name).join(", ")}` : "";
    $("batch-start").disabled = !files.length;
  });
  $("analyze").addEventListener("click", analyzeSingle);
  $("batch-start").addEventListener("click", startBatch);
  let filterTimer = null;
  $("patient-filter").addEventListener("input", () => { clearTimeout(filterTimer); filterTimer = setTimeout(loadPatients, 250); });

  await refreshHealth();
  setInterval(refreshHealth, 15000);
  try {
    showApp(await api("/api/auth/me"));
  } catch (err) {
    showLogin();
  }
}

document.addEventListener("DOMContentLoaded", init);
