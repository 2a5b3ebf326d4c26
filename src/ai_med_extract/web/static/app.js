// ai-med-extract demo page: upload, job progress over SSE, results in tabs, streamed patient summary.
// No dependencies; everything is built with DOM calls and text nodes, so server data is never parsed as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const meta = (name) => {
    const el = document.querySelector(`meta[name="ame-${name}"]`);
    return el ? el.content : null;
  };

  const config = {
    auth: meta("auth") === "on",
    maxBytes: Number(meta("max-bytes")) || 50 * 1024 * 1024,
    maxFiles: Number(meta("max-files")) || 20,
  };
  const ACCEPTED = new Set([
    "pdf", "docx", "txt", "text", "png", "jpg", "jpeg", "tif", "tiff", "bmp",
    "wav", "mp3", "m4a", "ogg", "flac", "webm",
  ]);
  const SPEECH_TYPES = new Set(["faster-whisper", "openai-whisper", "whisper"]);
  const KEY_STORE = "ame-api-key";

  const state = {
    key: sessionStorage.getItem(KEY_STORE) || "",
    files: [],
    jobId: null,
    result: null,
    docIndex: 0,
    controller: null,
    summary: null, // the upload's patient summary (it covers every document of the job)
  };

  // ---------------------------------------------------------------- HTTP and errors
  class ApiError extends Error {
    constructor(status, code, message, details) {
      super(message);
      this.status = status;
      this.code = code;
      this.details = details || {};
    }
  }

  async function toError(response) {
    let code = `HTTP_${response.status}`;
    let message = response.statusText || "the request failed";
    let details = {};
    try {
      const body = await response.json();
      if (body && body.error) {
        code = body.error.code || code;
        message = body.error.message || message;
        details = body.error.details || {};
      }
    } catch (_) { /* not JSON */ }
    const error = new ApiError(response.status, code, message, details);
    error.retryAfter = Number(response.headers.get("retry-after")) || null;
    return error;
  }

  async function api(path, { method = "GET", body, json, signal, headers = {} } = {}) {
    const h = { ...headers };
    if (state.key) h["X-API-Key"] = state.key;
    let payload = body;
    if (json !== undefined) {
      h["Content-Type"] = "application/json";
      payload = JSON.stringify(json);
    }
    let response;
    try {
      response = await fetch(path, { method, headers: h, body: payload, signal, cache: "no-store" });
    } catch (err) {
      if (err.name === "AbortError") throw err;
      throw new ApiError(0, "NETWORK_ERROR", "the server could not be reached");
    }
    if (!response.ok) {
      const error = await toError(response);
      if (error.status === 401) authNeeded(error);
      throw error;
    }
    return response;
  }

  const mb = (bytes) => (bytes < 1024 * 1024
    ? `${Math.max(1, Math.round(bytes / 1024))} KB`
    : `${(bytes / (1024 * 1024)).toFixed(1)} MB`);

  function describeError(error) {
    const d = error.details || {};
    switch (error.code) {
      case "FILE_TOO_LARGE":
      case "PAYLOAD_TOO_LARGE":
        return `The file is too large. The limit is ${mb(d.max_bytes || config.maxBytes)} per file.`;
      case "UNSUPPORTED_FORMAT":
      case "UNSUPPORTED_MEDIA_TYPE":
      case "FORMAT_UNAVAILABLE":
        return "This kind of file cannot be read. Upload a PDF, Word (DOCX), text, image or audio file.";
      case "EMPTY_FILE":
        return "The file is empty.";
      case "TOO_MANY_FILES":
        return `Too many files at once. The limit is ${d.max_files || config.maxFiles}.`;
      case "PDF_ENCRYPTED":
        return "The PDF is password-protected and cannot be read.";
      case "AUTH_REQUIRED":
        return "This server requires an API key. Enter it above.";
      case "AUTH_INVALID":
        return "The API key was not accepted. Check it and enter it again.";
      case "ROLE_REQUIRED":
        return `Your API key's role (${d.role || "unknown"}) cannot do this; it needs the ${d.required || "clinician"} role.`;
      case "RATE_LIMITED":
      case "TOO_MANY_REQUESTS":
        return `Too many requests. Wait ${error.retryAfter || "a few"} seconds and try again.`;
      case "QUEUE_FULL":
      case "SERVICE_BUSY":
        return "The server is busy. Try again in a few seconds.";
      case "NETWORK_ERROR":
        return "The server could not be reached. Check the connection and try again.";
      default:
        if (error.status === 503) return `The service is not available right now: ${error.message}.`;
        return capitalise(error.message || "Something went wrong") + ".";
    }
  }

  function capitalise(text) {
    return text ? text.charAt(0).toUpperCase() + text.slice(1) : text;
  }

  function showError(title, error) {
    const box = $("error-box");
    box.replaceChildren();
    const strong = document.createElement("strong");
    strong.textContent = title;
    box.append(strong, " ", error instanceof ApiError ? describeError(error) : String(error));
    if (error instanceof ApiError && error.code) {
      const code = document.createElement("span");
      code.className = "code";
      code.textContent = ` (${error.code})`;
      box.append(code);
    }
    box.hidden = false;
  }

  function clearError() {
    $("error-box").hidden = true;
    $("error-box").replaceChildren();
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // ---------------------------------------------------------------- server-sent events over fetch
  // EventSource cannot send the API key header, so the stream is read with fetch and parsed here.
  async function* events(path, signal) {
    let lastId = "";
    let failures = 0;
    for (;;) {
      const headers = { Accept: "text/event-stream" };
      if (lastId) headers["Last-Event-ID"] = lastId;
      let response;
      try {
        response = await api(path, { headers, signal });
      } catch (err) {
        if (err.name === "AbortError" || (err.status && err.status < 500)) throw err;
        if (++failures > 5) throw err;
        await sleep(500 * failures);
        continue;
      }
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      let event = { name: "message", data: [], id: null };
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          for (;;) {
            const at = buffer.search(/[\r\n]/);
            if (at < 0 || (buffer[at] === "\r" && at === buffer.length - 1)) break; // wait for \n
            const line = buffer.slice(0, at);
            buffer = buffer.slice(at + (buffer[at] === "\r" && buffer[at + 1] === "\n" ? 2 : 1));
            if (line === "") {
              if (event.data.length) {
                if (event.id !== null) lastId = event.id;
                failures = 0;
                yield { event: event.name, data: JSON.parse(event.data.join("\n")), id: event.id };
              }
              event = { name: "message", data: [], id: null };
            } else if (!line.startsWith(":")) {
              const colon = line.indexOf(":");
              const field = colon < 0 ? line : line.slice(0, colon);
              let value = colon < 0 ? "" : line.slice(colon + 1);
              if (value.startsWith(" ")) value = value.slice(1);
              if (field === "event") event.name = value;
              else if (field === "data") event.data.push(value);
              else if (field === "id") event.id = value;
            }
          }
        }
      } catch (err) {
        if (err.name === "AbortError") throw err;
      } finally {
        reader.cancel().catch(() => {});
      }
      // The stream ended without a terminal event: reconnect and resume after the last id.
      if (++failures > 5) throw new ApiError(0, "STREAM_LOST", "lost the connection to the progress stream");
      await sleep(500 * failures);
    }
  }

  // ---------------------------------------------------------------- API key
  function authNeeded(error) {
    if (!config.auth) return;
    $("auth-panel").hidden = false;
    const status = $("auth-status");
    status.textContent = describeError(error);
    status.className = "status bad";
    $("api-key").setAttribute("aria-invalid", "true");
  }

  async function checkKey() {
    const status = $("auth-status");
    status.className = "status";
    status.textContent = "Checking the key…";
    try {
      const who = await (await api("/api/whoami")).json();
      status.className = "status good";
      status.textContent = `Key accepted (role: ${who.role}).` +
        (who.role === "reader" ? " This role can read results but not upload; use a clinician key." : "");
      $("api-key").removeAttribute("aria-invalid");
      $("auth-forget").hidden = false;
      return true;
    } catch (err) {
      if (err.status !== 401) {
        status.className = "status bad";
        status.textContent = describeError(err);
      }
      return false;
    }
  }

  function setupAuth() {
    if (!config.auth) return Promise.resolve(true);
    $("auth-panel").hidden = false;
    $("auth-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const value = $("api-key").value.trim();
      if (!value) return;
      state.key = value;
      sessionStorage.setItem(KEY_STORE, value);
      $("api-key").value = "";
      if (await checkKey()) {
        loadModels();
        updateUploadButton();
      }
    });
    $("auth-forget").addEventListener("click", () => {
      state.key = "";
      sessionStorage.removeItem(KEY_STORE);
      $("auth-forget").hidden = true;
      $("auth-status").className = "status";
      $("auth-status").textContent = "The key was removed from this tab.";
      $("api-key").focus();
      updateUploadButton();
    });
    if (state.key) return checkKey();
    $("auth-status").textContent = "No key entered yet.";
    return Promise.resolve(false);
  }

  // ---------------------------------------------------------------- models
  async function loadModels() {
    const select = $("model-select");
    const keep = select.value;
    select.replaceChildren(new Option("Server default", ""));
    try {
      const info = await (await api("/api/model_info")).json();
      for (const model of info.models || []) {
        if (SPEECH_TYPES.has(model.type) || !model.name) continue;
        const label = model.name + (model.name === info.default_model ? " (default)" : "") +
          (model.backend_available === false ? " (unavailable here)" : "");
        const option = new Option(label, model.name);
        option.disabled = model.backend_available === false;
        select.append(option);
      }
    } catch (_) {
      // No model pool here (or no access yet): summaries use the server default.
    }
    if (![...select.options].some((o) => o.value === "template")) {
      select.append(new Option("Template only (no model)", "template"));
    }
    if ([...select.options].some((o) => o.value === keep)) select.value = keep;
  }

  // ---------------------------------------------------------------- file choice
  function extensionOf(name) {
    const dot = name.lastIndexOf(".");
    return dot < 0 ? "" : name.slice(dot + 1).toLowerCase();
  }

  function addFiles(fileList) {
    clearError();
    const rejected = [];
    for (const file of fileList) {
      if (!ACCEPTED.has(extensionOf(file.name))) {
        rejected.push(`${file.name}: this kind of file cannot be read (use PDF, DOCX, text, image or audio)`);
      } else if (file.size === 0) {
        rejected.push(`${file.name}: the file is empty`);
      } else if (file.size > config.maxBytes) {
        rejected.push(`${file.name}: ${mb(file.size)} is over the ${mb(config.maxBytes)} limit`);
      } else if (state.files.length >= config.maxFiles) {
        rejected.push(`${file.name}: at most ${config.maxFiles} files can be uploaded at once`);
      } else {
        state.files.push(file);
      }
    }
    renderFileList();
    if (rejected.length) {
      const box = $("error-box");
      box.replaceChildren();
      const strong = document.createElement("strong");
      strong.textContent = rejected.length === 1 ? "A file was not added." : `${rejected.length} files were not added.`;
      const list = document.createElement("ul");
      for (const line of rejected) {
        const li = document.createElement("li");
        li.textContent = line;
        list.append(li);
      }
      box.append(strong, list);
      box.hidden = false;
    }
  }

  function renderFileList() {
    const list = $("file-list");
    list.replaceChildren();
    state.files.forEach((file, index) => {
      const li = document.createElement("li");
      const name = document.createElement("span");
      name.textContent = `${file.name} (${mb(file.size)})`;
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "small";
      remove.textContent = "Remove";
      remove.setAttribute("aria-label", `Remove ${file.name}`);
      remove.addEventListener("click", () => {
        state.files.splice(index, 1);
        renderFileList();
        $("file-input").focus();
      });
      li.append(name, " ", remove);
      list.append(li);
    });
    updateUploadButton();
  }

  function updateUploadButton() {
    $("upload-button").disabled = state.files.length === 0 || state.controller !== null;
  }

  function setupDropZone() {
    const zone = $("drop-zone");
    const input = $("file-input");
    input.addEventListener("change", () => {
      addFiles(input.files);
      input.value = "";
    });
    for (const name of ["dragenter", "dragover"]) {
      zone.addEventListener(name, (e) => {
        e.preventDefault();
        e.dataTransfer.dropEffect = "copy";
        zone.classList.add("dragging");
      });
    }
    zone.addEventListener("dragleave", (e) => {
      if (!zone.contains(e.relatedTarget)) zone.classList.remove("dragging");
    });
    zone.addEventListener("drop", (e) => {
      e.preventDefault();
      zone.classList.remove("dragging");
      if (e.dataTransfer && e.dataTransfer.files.length) addFiles(e.dataTransfer.files);
    });
    // A file dropped beside the zone must not make the browser navigate away from the page.
    window.addEventListener("dragover", (e) => e.preventDefault());
    window.addEventListener("drop", (e) => e.preventDefault());
  }

  // ---------------------------------------------------------------- upload and progress
  function resetProgress() {
    $("progress-panel").hidden = false;
    $("progress-bar").value = 0;
    $("progress-text").textContent = "Uploading…";
    $("progress-log").replaceChildren();
  }

  function logStage(text) {
    const log = $("progress-log");
    const last = log.lastElementChild;
    if (last && last.textContent === text) return;
    const li = document.createElement("li");
    li.textContent = text;
    log.append(li);
  }

  function stageName(stage) {
    return {
      queued: "Waiting for a worker",
      starting: "Starting",
      extract_text: "Reading the document",
      scrub_phi: "Finding identifiers",
      extract_medical: "Extracting clinical data",
      done: "Done",
    }[stage] || stage.replace(/_/g, " ");
  }

  async function startUpload(e) {
    e.preventDefault();
    clearError();
    if (config.auth && !state.key) {
      authNeeded(new ApiError(401, "AUTH_REQUIRED", "an API key is required"));
      showError("Not started.", new ApiError(401, "AUTH_REQUIRED", "an API key is required"));
      $("api-key").focus();
      return;
    }
    if (!state.files.length) return;
    const form = new FormData();
    for (const file of state.files) form.append("files", file, file.name);
    form.append("phi_operator", $("phi-operator").value);
    const names = state.files.map((f) => f.name);
    state.controller = new AbortController();
    updateUploadButton();
    $("results-panel").hidden = true;
    state.summary = null;
    resetProgress();
    try {
      const created = await (await api("/upload", { method: "POST", body: form, signal: state.controller.signal })).json();
      state.jobId = created.job_id;
      state.files = [];
      renderFileList();
      $("cancel-button").hidden = false;
      $("progress-text").textContent = "Uploaded. Waiting for a worker…";
      const outcome = await follow(created.job_id, state.controller.signal, (event) => {
        if (event.event === "progress") {
          const d = event.data;
          $("progress-bar").value = Math.max(0, Math.min(100, Number(d.percent) || 0));
          const text = `${stageName(d.stage || "")}${d.message ? ` — ${d.message}` : ""}`;
          $("progress-text").textContent = `${Math.round(Number(d.percent) || 0)}% · ${text}`;
          logStage(text);
        }
      });
      if (outcome.event === "error") {
        throw new ApiError(0, outcome.data.code || "JOB_FAILED", outcome.data.message || "processing failed",
          outcome.data.details);
      }
      $("progress-bar").value = 100;
      $("progress-text").textContent = "Finished. Loading results…";
      const job = await (await api(`/job/${encodeURIComponent(created.job_id)}`)).json();
      if (job.status !== "completed" || !job.result) {
        throw new ApiError(0, (job.error && job.error.code) || "JOB_FAILED",
          (job.error && job.error.message) || `the job ended as ${job.status}`);
      }
      $("progress-text").textContent = "Finished.";
      showResults(job.result, names);
      if ($("auto-summary").checked) startSummary();
    } catch (err) {
      if (err.name === "AbortError") {
        $("progress-text").textContent = "Cancelled.";
      } else {
        $("progress-text").textContent = "Stopped.";
        showError("Processing failed.", err);
      }
    } finally {
      state.controller = null;
      $("cancel-button").hidden = true;
      updateUploadButton();
    }
  }

  // Results of an earlier upload, by job id, in the view this key gets (readers: de-identified).
  async function openJob(e) {
    e.preventDefault();
    clearError();
    const id = $("job-id").value.trim();
    if (!id) return;
    try {
      const job = await (await api(`/job/${encodeURIComponent(id)}`)).json();
      if (job.kind !== "upload") throw new ApiError(0, "NOT_AN_UPLOAD_JOB", "this job is not an upload");
      if (job.status !== "completed" || !job.result) {
        throw new ApiError(0, "JOB_NOT_COMPLETED", `the job is ${job.status}, not completed`);
      }
      state.jobId = job.job_id;
      state.summary = null;
      $("progress-panel").hidden = true;
      showResults(job.result, []);
    } catch (err) {
      showError("The results could not be opened.", err);
    }
  }

  // Follow a job's event stream until its terminal event; returns {event, data}.
  async function follow(jobId, signal, onEvent) {
    for await (const event of events(`/job/${encodeURIComponent(jobId)}/events`, signal)) {
      if (event.event === "complete" || event.event === "error") return event;
      onEvent(event);
    }
    throw new ApiError(0, "STREAM_LOST", "the progress stream ended early");
  }

  async function cancelJob() {
    const jobId = state.jobId;
    if (state.controller) state.controller.abort();
    if (!jobId) return;
    try {
      await api(`/job/${encodeURIComponent(jobId)}`, { method: "DELETE" });
    } catch (err) {
      showError("Could not cancel.", err);
    }
  }

  // ---------------------------------------------------------------- results
  function showResults(result, names) {
    state.result = result;
    const docs = result.documents || [];
    const picker = $("document-select");
    picker.replaceChildren();
    docs.forEach((doc, i) => {
      picker.append(new Option(`${i + 1}. ${names[i] || "document"} (${doc.media_type || "unknown type"})`, String(i)));
    });
    $("document-picker").hidden = docs.length < 2;
    state.docIndex = 0;
    $("results-panel").hidden = false;
    $("source-panel").hidden = true;
    renderDocument();
    selectTab($("tab-text"), false);
    $("results-title").focus();
  }

  function currentDoc() {
    return ((state.result && state.result.documents) || [])[state.docIndex] || {};
  }

  function renderDocument() {
    const doc = currentDoc();
    renderText(doc);
    renderPhi(doc);
    renderMedical(doc);
    renderFhir(doc);
    renderSummary();
  }

  function renderText(doc) {
    $("text-output").textContent = typeof doc.text === "string"
      ? doc.text || "(no text was found in this document)"
      : "The extracted text is withheld from this key's view; the de-identified text is in its own tab.";
    const info = { ...(doc.extraction || {}), ...((doc.extraction && doc.extraction.metadata) || {}) };
    const parts = [];
    const add = (label, value) => { if (value !== undefined && value !== null && value !== "") parts.push(`${label}: ${value}`); };
    add("Type", doc.media_type);
    add("Method", info.method || (Array.isArray(info.methods) ? info.methods.join(", ") : undefined));
    if (!info.duration_s) add("Pages", info.pages);
    if (Array.isArray(info.ocr_pages) && info.ocr_pages.length) add("OCR pages", info.ocr_pages.length);
    if (info.duration_s) add("Audio", `${Number(info.duration_s).toFixed(1)} s`);
    add("Characters", info.characters !== undefined ? info.characters : (doc.text || "").length);
    if (info.confidence !== undefined && info.confidence !== null) add("Confidence", Number(info.confidence).toFixed(2));
    $("text-meta").textContent = parts.join(" · ");
  }

  // Map spans (offsets in the original text) onto the scrubbed text, which differs only inside them.
  function phiSegments(original, scrubbed, spans) {
    const sorted = spans.filter((s) => Number.isInteger(s.start) && s.end > s.start)
      .sort((a, b) => a.start - b.start);
    const segments = [];
    let inPos = 0;
    let outPos = 0;
    for (let i = 0; i < sorted.length; i++) {
      const span = sorted[i];
      if (span.start < inPos) continue; // overlaps one already placed
      const gap = original.slice(inPos, span.start);
      if (scrubbed.substr(outPos, gap.length) !== gap) return null;
      if (gap) segments.push({ text: gap });
      outPos += gap.length;
      let next = i + 1;
      while (next < sorted.length && sorted[next].start < span.end) next++;
      const following = original.slice(span.end, next < sorted.length ? sorted[next].start : original.length);
      const token = `[${span.label}]`;
      const length = span.end - span.start;
      let end;
      if (scrubbed.startsWith(token, outPos)) end = outPos + token.length;
      else if (/^[*\s]*$/.test(scrubbed.substr(outPos, length)) && scrubbed.substr(outPos, length).length === length) end = outPos + length;
      else if (next >= sorted.length) end = scrubbed.length - following.length;
      else if (following) end = scrubbed.indexOf(following, outPos);
      else return null;
      if (end < outPos) return null;
      segments.push({ text: scrubbed.slice(outPos, end), label: span.label });
      outPos = end;
      inPos = span.end;
    }
    if (scrubbed.slice(outPos) !== original.slice(inPos)) return null;
    if (outPos < scrubbed.length) segments.push({ text: scrubbed.slice(outPos) });
    return segments;
  }

  function phiKind(label) {
    const l = String(label || "").toUpperCase();
    if (l === "NAME") return "name";
    if (l === "DATE" || l === "YEAR" || l === "AGE") return "date";
    if (["LOCATION", "ADDRESS", "ZIP", "HOSPITAL"].includes(l)) return "place";
    if (["PHONE", "FAX", "EMAIL", "URL", "IP_ADDRESS"].includes(l)) return "contact";
    return "id";
  }

  function renderPhi(doc) {
    const out = $("phi-output");
    const legend = $("phi-legend");
    out.replaceChildren();
    legend.replaceChildren();
    const phi = doc.phi;
    if (!phi) {
      out.textContent = "De-identification did not run for this document.";
      return;
    }
    const spans = phi.spans || [];
    const counts = phi.counts || spans.reduce((acc, s) => ({ ...acc, [s.label]: (acc[s.label] || 0) + 1 }), {});
    const labels = Object.keys(counts).sort();
    if (!labels.length) {
      const li = document.createElement("li");
      li.textContent = "No identifiers were found.";
      legend.append(li);
    }
    for (const label of labels) {
      const li = document.createElement("li");
      const swatch = document.createElement("mark");
      swatch.className = `phi phi-${phiKind(label)}`;
      swatch.textContent = label;
      li.append(swatch, ` ${counts[label]}`);
      legend.append(li);
    }
    const segments = phiSegments(doc.text || "", phi.text || "", spans);
    if (!segments) {
      out.textContent = phi.text || "";
      return;
    }
    for (const seg of segments) {
      if (!seg.label) {
        out.append(seg.text);
        continue;
      }
      const mark = document.createElement("mark");
      mark.className = `phi phi-${phiKind(seg.label)}`;
      mark.dataset.label = seg.label;
      mark.title = seg.label;
      mark.textContent = seg.text;
      out.append(mark);
    }
  }

  const CATEGORIES = [
    ["problems", "Problem"], ["medications", "Medication"], ["procedures", "Procedure"],
    ["labs", "Lab result"], ["vitals", "Vital sign"], ["allergies", "Allergy"],
  ];

  function medicalItems(medical) {
    if (!medical) return [];
    if (Array.isArray(medical.items)) {
      return medical.items.map((item) => ({ type: capitalise(String(item.type || item.kind || "finding")), item }));
    }
    const rows = [];
    for (const [key, label] of CATEGORIES) {
      for (const item of medical[key] || []) rows.push({ type: label, item });
    }
    return rows.sort((a, b) => (a.item.start || 0) - (b.item.start || 0));
  }

  function itemDetails(item) {
    const parts = [];
    const push = (v) => { if (v !== undefined && v !== null && v !== "" && v !== false) parts.push(String(v)); };
    push(item.strength);
    if (!item.strength && item.dose !== undefined && item.dose !== null) push(`${item.dose}${item.unit ? ` ${item.unit}` : ""}`);
    push(item.route);
    push(item.frequency);
    push(item.duration);
    if (item.prn) push(`as needed${item.prn_reason ? ` for ${item.prn_reason}` : ""}`);
    if (item.kind) {
      push(`${item.value}${item.diastolic ? `/${item.diastolic}` : ""} ${item.unit || ""}`.trim());
    } else if (item.value !== undefined && item.value !== null) {
      push(`${item.value}${item.unit ? ` ${item.unit}` : ""}`);
    } else {
      push(item.value_text);
    }
    if (item.flag) push(`flag: ${item.flag}`);
    if (item.reference_low !== undefined && item.reference_low !== null) push(`ref ${item.reference_low}–${item.reference_high ?? ""}`);
    if (Array.isArray(item.reactions) && item.reactions.length) push(`reaction: ${item.reactions.join(", ")}`);
    push(item.severity);
    push(item.date);
    if (item.status && item.status !== "active") push(`status: ${item.status}`);
    for (const code of item.codes || []) push(`${(code.system || "").split("/").pop()} ${code.code}`);
    return parts.join(" · ");
  }

  function itemFlags(item) {
    const ctx = item.context || {};
    const flag = (name) => Boolean(item[name] || ctx[name]);
    const flags = [];
    if (flag("negated") || item.no_known_allergies) flags.push("negated");
    if (flag("uncertain")) flags.push("uncertain");
    if (flag("historical")) flags.push("historical");
    if (flag("hypothetical")) flags.push("hypothetical");
    const subject = item.subject || ctx.subject;
    if (subject && subject !== "patient") flags.push(subject);
    return flags;
  }

  function renderMedical(doc) {
    const body = $("medical-table").tBodies[0];
    body.replaceChildren();
    const medical = doc.medical;
    const rows = medicalItems(medical);
    const negated = rows.filter((r) => itemFlags(r.item).includes("negated")).length;
    $("medical-meta").textContent = medical && medical.withheld
      ? "The findings were read from the identified text, which this key may not see; they are withheld."
      : medical
        ? `${rows.length} finding(s), ${negated} negated${medical.mode ? ` · extracted by ${medical.mode}` : ""}`
        : "Medical data extraction did not run for this document.";
    for (const { type, item } of rows) {
      const tr = document.createElement("tr");
      const flags = itemFlags(item);
      if (flags.includes("negated")) tr.className = "negated";
      const name = item.name || item.substance || (item.kind ? item.kind.replace(/_/g, " ") : "") || item.text || "";
      const cells = [type, name, item.text || "", itemDetails(item), null, item.section || ""];
      cells.forEach((value, i) => {
        const td = document.createElement(i === 1 ? "th" : "td");
        if (i === 1) td.scope = "row";
        if (i === 1) {
          const button = document.createElement("button");
          button.type = "button";
          button.className = "link-button";
          button.textContent = value;
          button.title = "Show where this was found";
          button.addEventListener("click", () => openFinding(state.docIndex, item, type, button));
          td.append(button);
        } else if (value === null) {
          if (!flags.length) {
            td.textContent = "affirmed";
          }
          for (const f of flags) {
            const badge = document.createElement("span");
            badge.className = `badge badge-${f}`;
            badge.textContent = f;
            td.append(badge, " ");
          }
        } else {
          td.textContent = value;
        }
        tr.append(td);
      });
      body.append(tr);
    }
    if (medical && !medical.withheld && !rows.length) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.colSpan = 6;
      td.textContent = "No clinical findings were extracted.";
      tr.append(td);
      body.append(tr);
    }
  }

  function fhirOf(doc) {
    return (doc.medical && doc.medical.fhir) || doc.fhir || null;
  }

  function renderFhir(doc) {
    const bundle = fhirOf(doc);
    $("fhir-output").textContent = bundle
      ? JSON.stringify(bundle, null, 2)
      : "No FHIR bundle came with this document. Save it as a medical record to build one.";
    $("fhir-download").hidden = !bundle;
    $("fhir-build").hidden = Boolean(bundle) || !doc.document_id;
    const entries = bundle && Array.isArray(bundle.entry) ? bundle.entry : [];
    const types = {};
    for (const e of entries) {
      const t = e.resource && e.resource.resourceType;
      if (t) types[t] = (types[t] || 0) + 1;
    }
    $("fhir-meta").textContent = bundle
      ? `${bundle.resourceType || "Bundle"} with ${entries.length} entries` +
        (Object.keys(types).length ? `: ${Object.entries(types).map(([t, n]) => `${n} ${t}`).join(", ")}` : "")
      : "";
  }

  // Stores the document's extraction as a versioned medical record; the answer carries its bundle.
  async function buildFhir() {
    const doc = currentDoc();
    const button = $("fhir-build");
    button.disabled = true;
    $("fhir-meta").textContent = "Building…";
    try {
      const record = await (await api("/extract_medical_data", {
        method: "POST", json: { document_id: doc.document_id, fhir: true },
      })).json();
      doc.fhir = record.fhir;
      doc.medical_record = { id: record.record_id, version: record.version };
      renderFhir(doc);
      $("fhir-meta").textContent += ` · medical record ${record.record_id}, version ${record.version}`;
    } catch (err) {
      $("fhir-meta").textContent = `The bundle could not be built: ${describeError(err)}`;
    } finally {
      button.disabled = false;
    }
  }

  function downloadFhir() {
    const doc = currentDoc();
    const bundle = fhirOf(doc);
    if (!bundle) return;
    const url = URL.createObjectURL(new Blob([JSON.stringify(bundle, null, 2)], { type: "application/fhir+json" }));
    const a = document.createElement("a");
    a.href = url;
    a.download = `fhir-bundle-${doc.document_id || "document"}.json`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  // ---------------------------------------------------------------- grounding: where a finding or cited fact came from
  // Findings carry offsets into the text medical extraction read (``medical.source``: the de-identified
  // copy when scrubbing ran); resources of the document's bundle carry the same offsets in an extension.
  // (the extension's URL is matched by its path: the page names no host)
  const GROUNDING_PATH = "/fhir/StructureDefinition/source-span";

  function textAt(doc, key) {
    const value = key === "phi.text" ? doc.phi && doc.phi.text : doc.text;
    if (typeof value !== "string") return null;
    return { text: value, name: key === "phi.text" ? "de-identified text" : "extracted text" };
  }

  // The text a document's findings (and its bundle's resources) index, as this caller is given it.
  function findingsText(doc) {
    const medical = doc.medical || {};
    return textAt(doc, medical.source === "text" ? "text" : "phi.text");
  }

  // The text a summary read from a document without a bundle (the scrubbed copy when there is one).
  function summaryText(doc) {
    return textAt(doc, "phi.text") || textAt(doc, "text");
  }

  function groundingSpan(resource) {
    const ext = (resource.extension || []).find((e) => String(e.url || "").endsWith(GROUNDING_PATH));
    if (!ext) return null;
    const value = (name) => ((ext.extension || []).find((e) => e.url === name) || {}).valueInteger;
    return { start: value("start"), end: value("end") };
  }

  // A resource of a bundle by reference: "Type/id" or "entry[n]".
  function findResource(bundle, ref) {
    const entries = bundle && Array.isArray(bundle.entry) ? bundle.entry : [];
    const position = /^entry\[(\d+)\]$/.exec(ref);
    if (position) return (entries[Number(position[1])] || {}).resource || null;
    const [type, id] = ref.split("/");
    const found = entries.find((e) => e.resource && e.resource.resourceType === type && e.resource.id === id);
    return found ? found.resource : null;
  }

  // "From document 2." when the upload had several documents.
  function fromDocument(index) {
    const docs = (state.result && state.result.documents) || [];
    return docs.length > 1 ? `From document ${index + 1}.` : "";
  }

  // Show a source: the text with [start, end) highlighted and scrolled to, and/or a FHIR resource.
  function showSource({ title, text, start, end, resource, note, trigger }) {
    const panel = $("source-panel");
    const pre = $("source-text");
    pre.replaceChildren();
    const placed = text && Number.isInteger(start) && Number.isInteger(end) &&
      start >= 0 && start < end && end <= text.text.length;
    let mark = null;
    if (placed) {
      mark = document.createElement("mark");
      mark.className = "grounding";
      mark.id = "source-mark";
      mark.tabIndex = -1;
      mark.textContent = text.text.slice(start, end);
      pre.append(text.text.slice(0, start), mark, text.text.slice(end));
    }
    pre.hidden = !placed;
    $("source-title").textContent = title;
    const where = placed ? `Characters ${start}–${end} of the ${text.name}.` : "";
    $("source-meta").textContent = [where, note || ""].filter(Boolean).join(" ") ||
      "Where this came from is not in the results this key can see.";
    $("source-resource").textContent = resource ? JSON.stringify(resource, null, 2) : "";
    $("source-resource").hidden = !resource;
    $("source-resource-title").hidden = !resource;
    panel.hidden = false;
    state.sourceTrigger = trigger || null;
    const target = mark || (resource ? $("source-resource") : panel);
    target.scrollIntoView({ block: "center" });
    if (mark) mark.focus({ preventScroll: true });
  }

  function openFinding(index, item, type, trigger) {
    const doc = ((state.result && state.result.documents) || [])[index] || {};
    const name = item.name || item.substance || item.text || "finding";
    showSource({
      title: `${type}: ${name}`,
      text: findingsText(doc),
      start: item.start,
      end: item.end,
      note: [fromDocument(index), item.source_path ? `Structured entry: ${item.source_path}.` : ""]
        .filter(Boolean).join(" "),
      trigger,
    });
  }

  // A summary citation: the fact's source path says which document, and which resource or span.
  function openCitation(id, trigger) {
    const fact = (summaryState().facts || []).find((f) => f.id === id);
    if (!fact) {
      showSource({ title: `Fact ${id}`, note: "This fact is not among the summary's cited facts.", trigger });
      return;
    }
    const title = `${id}: ${fact.label}${fact.date ? ` (${fact.date})` : ""}`;
    const source = fact.source || {};
    const path = String(source.path || "");
    const found = /^documents\[(\d+)\](?:\.fhir:(.+))?$/.exec(path);
    const docs = (state.result && state.result.documents) || [];
    const doc = found ? docs[Number(found[1])] : null;
    if (!doc) {
      showSource({ title, note: `Source: ${path || "not given"}.`, trigger });
      return;
    }
    const from = fromDocument(Number(found[1]));
    if (found[2] === undefined) {
      const span = Array.isArray(source.span) ? source.span : [];
      showSource({ title, text: summaryText(doc), start: span[0], end: span[1], note: from, trigger });
      return;
    }
    const ref = found[2].replace(/\.component\[\d+\]$/, "");
    const resource = findResource(fhirOf(doc), ref);
    const span = resource ? groundingSpan(resource) : null;
    showSource({
      title,
      text: span ? findingsText(doc) : null,
      start: span ? span.start : undefined,
      end: span ? span.end : undefined,
      resource,
      note: [from, `FHIR resource ${ref}${resource ? "" : " (not in this document's bundle)"}.`].filter(Boolean).join(" "),
      trigger,
    });
  }

  function closeSource() {
    $("source-panel").hidden = true;
    const trigger = state.sourceTrigger;
    state.sourceTrigger = null;
    if (trigger && trigger.isConnected) trigger.focus();
  }

  // ---------------------------------------------------------------- patient summary
  function summaryState() {
    if (!state.summary) state.summary = { status: "idle", sections: [], markdown: null, facts: [], note: "", tokenEvents: 0 };
    return state.summary;
  }

  function renderSummary() {
    const s = summaryState();
    const out = $("summary-output");
    out.replaceChildren();
    out.setAttribute("aria-busy", s.status === "running" ? "true" : "false");
    out.dataset.streamedEvents = String(s.tokenEvents || 0);
    $("summary-button").disabled = s.status === "running" || !state.jobId;
    $("summary-button").textContent = s.status === "done" ? "Write again" : "Write summary";
    $("summary-status").textContent = s.note;
    if (s.markdown) {
      renderMarkdown(out, s.markdown);
      return;
    }
    for (const section of s.sections) {
      const h = document.createElement("h3");
      h.textContent = capitalise(section.name.replace(/_/g, " "));
      const p = document.createElement("p");
      p.className = "streamed";
      p.textContent = section.text;
      out.append(h, p);
    }
  }

  // A small, safe Markdown subset: headings, bullet lists, bold, paragraphs (text nodes only).
  function renderMarkdown(target, markdown) {
    let list = null;
    const inline = (el, text) => {
      text.split(/(\*\*[^*]+\*\*)/).forEach((part) => {
        if (part.startsWith("**") && part.endsWith("**") && part.length > 4) {
          const b = document.createElement("strong");
          b.textContent = part.slice(2, -2);
          el.append(b);
        } else if (part) {
          cite(el, part);
        }
      });
    };
    // "[F1, F2]" after a statement: each fact id becomes a button that opens its source.
    const cite = (el, text) => {
      text.split(/(\[F\d+(?:,\s*F\d+)*(?:,\s*\.\.\.)?\])/).forEach((part) => {
        if (!/^\[F\d+/.test(part)) {
          if (part) el.append(part);
          return;
        }
        el.append("[");
        part.slice(1, -1).split(/,\s*/).forEach((id, i) => {
          if (i) el.append(", ");
          if (!/^F\d+$/.test(id)) {
            el.append(id);
            return;
          }
          const button = document.createElement("button");
          button.type = "button";
          button.className = "cite";
          button.textContent = id;
          button.setAttribute("aria-label", `${id}: show the source`);
          button.addEventListener("click", () => openCitation(id, button));
          el.append(button);
        });
        el.append("]");
      });
    };
    for (const raw of markdown.split("\n")) {
      const line = raw.trimEnd();
      const heading = /^(#{1,6})\s+(.*)$/.exec(line);
      const bullet = /^\s*[-*]\s+(.*)$/.exec(line);
      if (heading) {
        list = null;
        const h = document.createElement(`h${Math.min(6, heading[1].length + 2)}`);
        inline(h, heading[2]);
        target.append(h);
      } else if (bullet) {
        if (!list) {
          list = document.createElement("ul");
          target.append(list);
        }
        const li = document.createElement("li");
        inline(li, bullet[1]);
        list.append(li);
      } else if (line.trim()) {
        list = null;
        const p = document.createElement("p");
        inline(p, line);
        target.append(p);
      } else {
        list = null;
      }
    }
  }

  async function startSummary() {
    const s = summaryState();
    if (s.status === "running" || !state.jobId) return;
    Object.assign(s, { status: "running", sections: [], markdown: null, facts: [], note: "Starting…", tokenEvents: 0 });
    renderSummary();
    const model = $("model-select").value;
    const update = () => { if (state.summary === s) renderSummary(); };
    try {
      const body = { job_id: state.jobId };
      if (model) body.model = model;
      const created = await (await api("/generate_patient_summary", { method: "POST", json: body })).json();
      s.note = "Writing…";
      update();
      const outcome = await follow(created.job_id, undefined, (event) => {
        if (event.event === "token") {
          const name = event.data.section || "summary";
          let section = s.sections[s.sections.length - 1];
          if (!section || section.name !== name) {
            section = { name, text: "" };
            s.sections.push(section);
          }
          section.text += event.data.text || "";
          s.tokenEvents = (s.tokenEvents || 0) + 1;
          s.note = `Writing ${name.replace(/_/g, " ")}…`;
          update();
        } else if (event.event === "progress") {
          s.note = `${Math.round(Number(event.data.percent) || 0)}% · ${event.data.message || stageName(event.data.stage || "")}`;
          update();
        }
      });
      if (outcome.event === "error") throw new ApiError(0, outcome.data.code, outcome.data.message, outcome.data.details);
      const job = await (await api(`/job/${encodeURIComponent(created.job_id)}`)).json();
      const summary = job.result && job.result.summary;
      s.markdown = summary && summary.markdown ? summary.markdown : null;
      s.facts = (summary && Array.isArray(summary.facts)) ? summary.facts : [];
      const gen = (summary && summary.generation) || {};
      s.note = `Done${gen.model ? ` · model ${gen.model}` : ""}${summary && summary.cached ? " · from cache" : ""}.`;
      s.status = "done";
    } catch (err) {
      s.status = "failed";
      s.note = `The summary could not be written: ${describeError(err)}${err.code ? ` (${err.code})` : ""}`;
    }
    update();
  }

  // ---------------------------------------------------------------- tabs (ARIA tabs, automatic activation)
  function selectTab(tab, focus = true) {
    for (const other of document.querySelectorAll('[role="tab"]')) {
      const selected = other === tab;
      other.setAttribute("aria-selected", String(selected));
      other.tabIndex = selected ? 0 : -1;
      $(other.getAttribute("aria-controls")).hidden = !selected;
    }
    if (focus) tab.focus();
  }

  function setupTabs() {
    const tabs = [...document.querySelectorAll('[role="tab"]')];
    tabs.forEach((tab, i) => {
      tab.addEventListener("click", () => selectTab(tab));
      tab.addEventListener("keydown", (e) => {
        const moves = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 };
        if (!(e.key in moves)) return;
        e.preventDefault();
        selectTab(tabs[(moves[e.key] + tabs.length) % tabs.length]);
      });
    });
  }

  // ---------------------------------------------------------------- start
  async function start() {
    $("results-title").tabIndex = -1;
    setupDropZone();
    setupTabs();
    $("upload-form").addEventListener("submit", startUpload);
    $("open-form").addEventListener("submit", openJob);
    $("cancel-button").addEventListener("click", cancelJob);
    $("document-select").addEventListener("change", (e) => {
      state.docIndex = Number(e.target.value) || 0;
      renderDocument();
    });
    $("fhir-download").addEventListener("click", downloadFhir);
    $("fhir-build").addEventListener("click", buildFhir);
    $("summary-button").addEventListener("click", startSummary);
    $("source-close").addEventListener("click", closeSource);
    const authorised = await setupAuth();
    if (authorised) await loadModels();
    document.body.dataset.ready = "true";
  }

  // Exposed for tests of the span mapping only.
  window.ameTesting = { phiSegments };
  start();
})();
