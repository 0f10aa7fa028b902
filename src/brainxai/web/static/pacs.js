// The PACS page: lists the configured PACS's studies (GET /api/pacs/studies) and analyses one
// (POST /api/pacs/studies/{uid}/analyze), which stores the results back into that study.
"use strict";

const message = document.getElementById("pacs-message");
const table = document.getElementById("pacs-studies");

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  const body = await response.json().catch(() => ({}));
  if (response.status === 401) throw new Error("Please sign in on the analysis page first.");
  if (!response.ok) throw new Error(body.message || `HTTP ${response.status}`);
  return body;
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
  return td;
}

function describe(outcome) {
  const lines = outcome.series.map((s) =>
    s.status === "analysed" ? `${s.prediction} (${s.objects} objects)` : `${s.status}: ${s.reason}`);
  return `${outcome.stored.length} result object(s) stored (UNVERIFIED). ${lines.join("; ")}`;
}

async function analyse(uid, button, status) {
  button.disabled = true;
  status.textContent = "Analysing…";
  try {
    status.textContent = describe(await api(`/api/pacs/studies/${encodeURIComponent(uid)}/analyze`, { method: "POST" }));
  } catch (error) {
    status.textContent = error.message;
  } finally {
    button.disabled = false;
  }
}

async function list(event) {
  if (event) event.preventDefault();
  const since = document.getElementById("pacs-since").value;
  message.textContent = "Loading…";
  try {
    const data = await api(`/api/pacs/studies${since ? `?since=${since}` : ""}`);
    const body = table.querySelector("tbody");
    body.replaceChildren();
    for (const study of data.studies) {
      const row = document.createElement("tr");
      [study.date, study.patient_id, study.description, study.modalities.join(", ")].forEach((t) => cell(row, t));
      const action = cell(row, "");
      const button = document.createElement("button");
      button.className = "btn";
      button.type = "button";
      button.textContent = "Analyse";
      const status = document.createElement("div");
      button.addEventListener("click", () => analyse(study.study_uid, button, status));
      action.append(button, status);
      body.appendChild(row);
    }
    table.hidden = data.studies.length === 0;
    message.textContent = `${data.studies.length} stud${data.studies.length === 1 ? "y" : "ies"} in ${data.pacs}`;
  } catch (error) {
    table.hidden = true;
    message.textContent = error.message;
  }
}

document.getElementById("pacs-filter").addEventListener("submit", list);
list();
