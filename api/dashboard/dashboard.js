// The compliance dashboard: reads /v1/kpis and /v1/compliance with the caller's API key and
// draws them as inline SVG. No libraries, no build step. Every bar and point carries
// data-key and data-value (the number it draws); every chart carries data-chart.
"use strict";

const KEY_STORAGE = "evidence-ledger.dashboard.key";
const LANG_STORAGE = "evidence-ledger.dashboard.lang";
const SVG_NS = "http://www.w3.org/2000/svg";
const RATES = ["rejection", "return", "first_time_right", "electronic", "mobile_acts"];

const TEXT = {
  en: {
    title: "Compliance dashboard", subtitle: "Evidence Ledger: approvals and signatures",
    keyLabel: "Compliance API key", connect: "Open dashboard", signOut: "Forget key",
    keyHint: "A key with the compliance role; it is kept in this browser tab only.",
    filters: "Filters", since: "From", until: "Until (exclusive)", template: "Template",
    department: "Department", all: "All", reset: "Reset", day: "Day", week: "Week",
    headline: "Headline rates", cycleTime: "Cycle time", median: "median", p90: "p90",
    tasks: "Tasks", rate_rejection: "Rejection rate", rate_return: "Return rate",
    rate_first_time_right: "First time right", rate_electronic: "Electronic end to end",
    rate_mobile_acts: "Mobile acts", throughput: "Throughput: created and completed",
    created: "Created", completed: "Completed", cycleByMonth: "Cycle time by month (hours)",
    bottlenecks: "Bottleneck ranking", byStep: "Waiting by step (median hours)",
    byApprover: "Waiting by approver (median hours)", breaches: "Compliance breaches",
    overdue: "Overdue tasks", atRisk: "At-risk tasks", none: "None", noData: "No data for these filters",
    task: "Task", rule: "Rule", when: "When", actor: "Actor", evidence: "Evidence", step: "Step",
    waitingFor: "Waiting for", due: "Due", overdueBy: "Overdue by", timeLeft: "Time left",
    acts: "acts", hours: "h", asOf: "As of", logPosition: "log position",
    taskDetails: "Task details", close: "Close", status: "Status", initiator: "Initiator",
    deadline: "Deadline", pending: "Pending", timeline: "Timeline", makePack: "Make evidence pack",
    makingPack: "Making the evidence pack…", downloadPack: "Download evidence pack",
    packReady: "Pack ready", loading: "Loading…", of: "of", log: "leaf",
    status_draft: "Draft", status_in_progress: "In progress", status_partially_signed: "Partially signed",
    status_completed: "Completed", status_rejected: "Rejected", status_revoked: "Revoked",
    status_expired: "Expired",
  },
  zh: {
    title: "合规看板", subtitle: "证据账本：审批与签署", keyLabel: "合规 API 密钥",
    connect: "打开看板", signOut: "清除密钥", keyHint: "需要合规角色的密钥，仅保存在当前浏览器标签页中。",
    filters: "筛选", since: "起始日期", until: "截止日期（不含）", template: "模板",
    department: "部门", all: "全部", reset: "重置", day: "日", week: "周",
    headline: "关键比率", cycleTime: "审批周期", median: "中位数", p90: "P90",
    tasks: "任务数", rate_rejection: "拒绝率", rate_return: "退回率",
    rate_first_time_right: "一次通过率", rate_electronic: "全程电子化率",
    rate_mobile_acts: "移动端操作占比", throughput: "吞吐量：新建与完成",
    created: "新建", completed: "完成", cycleByMonth: "按月审批周期（小时）",
    bottlenecks: "瓶颈排名", byStep: "按步骤等待时间（中位数，小时）",
    byApprover: "按审批人等待时间（中位数，小时）", breaches: "合规违规",
    overdue: "逾期任务", atRisk: "临期任务", none: "无", noData: "当前筛选下没有数据",
    task: "任务", rule: "规则", when: "时间", actor: "操作人", evidence: "证据", step: "当前步骤",
    waitingFor: "待处理人", due: "截止时间", overdueBy: "已逾期", timeLeft: "剩余时间",
    acts: "次操作", hours: "小时", asOf: "数据截至", logPosition: "日志位置",
    taskDetails: "任务详情", close: "关闭", status: "状态", initiator: "发起人",
    deadline: "截止时间", pending: "待处理", timeline: "时间线", makePack: "生成证据包",
    makingPack: "正在生成证据包…", downloadPack: "下载证据包", packReady: "证据包已生成",
    loading: "加载中…", of: "/", log: "叶子",
    status_draft: "草稿", status_in_progress: "进行中", status_partially_signed: "部分签署",
    status_completed: "已完成", status_rejected: "已拒绝", status_revoked: "已撤销",
    status_expired: "已过期",
  },
};

const state = { lang: "en", granularity: "week", kpis: null, compliance: null, choices: null, task: null, request: 0 };
const $ = (selector) => document.querySelector(selector);
const t = (key) => TEXT[state.lang][key] ?? TEXT.en[key] ?? key;

// -- small helpers ------------------------------------------------------------------------

function element(tag, attributes = {}, text = null) {
  const made = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) made.setAttribute(name, value);
  if (text !== null) made.textContent = text;
  return made;
}

function svgElement(tag, attributes = {}, text = null) {
  const made = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes)) made.setAttribute(name, String(value));
  if (text !== null) made.textContent = text;
  return made;
}

function formatNumber(value) {
  if (value === null || value === undefined) return "–";
  return Number.isInteger(value) ? String(value) : value.toFixed(value < 10 ? 1 : 0);
}

function formatHours(value) {
  return value === null || value === undefined ? "–" : `${formatNumber(value)} ${t("hours")}`;
}

function formatPercent(rate) {
  return rate === null || rate === undefined ? "–" : `${(rate * 100).toFixed(1)}%`;
}

function formatTime(iso) {
  if (!iso) return "–";
  return iso.replace("T", " ").replace(/(\d\d:\d\d)(:\d\d(\.\d+)?)?(Z|\+00:00)$/, "$1 UTC");
}

function templateName(id) {
  const found = (state.choices?.templates ?? []).find((template) => template.id === id);
  return found ? found.name : id ?? "–";
}

function niceScale(value) {
  // A round top for a value axis and its step: 0, step, 2 step … top, four or five ticks.
  if (!(value > 0)) return { top: 4, step: 1 };
  const raw = value / 4;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((nice) => nice >= raw);
  const whole = Number.isInteger(value) && step < 1 ? 1 : step;
  return { top: whole * Math.ceil(value / whole), step: whole };
}

function shortPeriod(period) {
  return period.replace(/^\d{4}-(W\d+)$/, "$1").replace(/^\d{4}-(\d\d-\d\d)$/, "$1");
}

function shortLabel(text, most = 34) {
  return text.length > most ? `${text.slice(0, most - 1)}…` : text;
}

// -- talking to the API -------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

async function problemDetail(response) {
  try {
    const problem = await response.json();
    return problem.detail || problem.title || `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

async function callApi(path, options = {}) {
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(KEY_STORAGE)}`, ...(options.headers ?? {}) };
  const response = await fetch(path, { ...options, headers });
  if (!response.ok) throw new ApiError(response.status, await problemDetail(response));
  return response;
}

async function fetchJson(path) {
  return (await callApi(path)).json();
}

function filterQuery() {
  const query = new URLSearchParams();
  for (const name of ["since", "until", "template", "department"]) {
    const value = $(`#filter-${name}`).value;
    if (value) query.set(name, value);
  }
  return query.toString();
}

function newIdempotencyKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

// -- errors and signing in ----------------------------------------------------------------

function showError(message) {
  const box = $("#error");
  box.textContent = message;
  box.hidden = !message;
}

function showSignedIn(signedIn) {
  $("#key-form").hidden = signedIn;
  $("#dashboard").hidden = !signedIn;
  $("#sign-out").hidden = !signedIn;
  if (!signedIn) {
    $("#drill").hidden = true;
    document.body.dataset.state = "signed-out";
  }
}

function handleFailure(error) {
  showError(error.message);
  if (error instanceof ApiError && error.status === 401) {
    sessionStorage.removeItem(KEY_STORAGE);
    showSignedIn(false);
  } else {
    document.body.dataset.state = "error";
  }
}

// -- loading and drawing everything -------------------------------------------------------

async function loadDashboard() {
  const request = ++state.request;
  const query = filterQuery();
  document.body.dataset.state = "loading";
  try {
    const suffix = query ? `?${query}` : "";
    const [kpis, compliance] = await Promise.all([fetchJson(`/v1/kpis${suffix}`), fetchJson(`/v1/compliance${suffix}`)]);
    if (request !== state.request) return; // a newer filter change has taken over
    Object.assign(state, { kpis, compliance });
    rememberChoices(kpis.choices);
    showError("");
    renderAll();
    document.body.dataset.query = query;
    document.body.dataset.state = "ready";
  } catch (error) {
    if (request === state.request) handleFailure(error);
  }
}

function rememberChoices(choices) {
  // Choices seen once stay in the menus, so a filter never hides its own alternatives.
  const known = state.choices ?? { templates: [], departments: [] };
  for (const template of choices?.templates ?? []) {
    if (!known.templates.some((seen) => seen.id === template.id)) known.templates.push(template);
  }
  for (const department of choices?.departments ?? []) {
    if (!known.departments.includes(department)) known.departments.push(department);
  }
  state.choices = known;
  fillSelect($("#filter-template"), known.templates.map((template) => [template.id, template.name]));
  fillSelect($("#filter-department"), known.departments.map((department) => [department, department]));
}

function fillSelect(select, options) {
  const chosen = select.value;
  select.replaceChildren(element("option", { value: "", "data-i18n": "all" }, t("all")));
  for (const [value, label] of options) select.append(element("option", { value }, label));
  select.value = chosen;
}

function renderAll() {
  if (!state.kpis) return;
  const { kpis, compliance } = state;
  $("#as-of").textContent = `${t("asOf")} ${formatTime(kpis.as_of)} · ${t("logPosition")} ${kpis.log_position}`;
  renderHeadline(kpis);
  const throughput = state.granularity === "day"
    ? kpis.throughput.by_day.map((row) => ({ period: row.day, created: row.created, completed: row.completed }))
    : kpis.throughput.by_week.map((row) => ({ period: row.week, created: row.created, completed: row.completed }));
  drawGroupedBars($("#chart-throughput"), "throughput", throughput, ["created", "completed"]);
  drawCycleTimeLines($("#chart-cycle"), kpis.cycle_time.by_month);
  const steps = kpis.waiting.by_step.map((row) => ({
    key: `${row.template_id}/${row.step_key}`, label: `${templateName(row.template_id)} · ${row.step_key}`, row,
  }));
  drawHorizontalBars($("#chart-wait-step"), "wait-by-step", steps);
  const approvers = kpis.waiting.by_approver.map((row) => ({ key: row.actor, label: row.actor, row }));
  drawHorizontalBars($("#chart-wait-approver"), "wait-by-approver", approvers);
  renderRules(compliance.rules);
  renderBreaches(compliance.breaches);
  renderTaskTable($("#overdue"), "overdue", kpis.overdue, "overdue_hours", "overdueBy");
  renderTaskTable($("#at-risk"), "at-risk", kpis.at_risk, "hours_left", "timeLeft");
}

function tile(key, label, value, shown, detail, extra = {}) {
  const box = element("div", { class: "tile", "data-tile": key, "data-value": value ?? "", ...extra });
  box.append(element("div", { class: "label" }, label), element("div", { class: "value" }, shown));
  if (detail) box.append(element("div", { class: "detail" }, detail));
  return box;
}

function renderHeadline(kpis) {
  const tiles = [tile("tasks", t("tasks"), kpis.tasks.total, String(kpis.tasks.total),
    Object.entries(kpis.tasks.by_status).map(([status, n]) => `${t(`status_${status}`)} ${n}`).join(" · "))];
  for (const key of RATES) {
    const rate = kpis.rates[key];
    const counts = { "data-count": rate.count, "data-of": rate.of };
    tiles.push(tile(key, t(`rate_${key}`), rate.rate, formatPercent(rate.rate), `${rate.count} ${t("of")} ${rate.of}`, counts));
  }
  const overall = kpis.cycle_time.overall;
  tiles.push(tile("cycle_median", `${t("cycleTime")} · ${t("median")}`, overall.median_hours, formatHours(overall.median_hours), `${overall.tasks} ${t("tasks")}`));
  tiles.push(tile("cycle_p90", `${t("cycleTime")} · ${t("p90")}`, overall.p90_hours, formatHours(overall.p90_hours), `${overall.tasks} ${t("tasks")}`));
  $("#headline").replaceChildren(...tiles);
}

// -- charts -------------------------------------------------------------------------------

function chartFrame(container, name, width, height) {
  const svg = svgElement("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "data-chart": name });
  container.replaceChildren(svg);
  return svg;
}

function drawEmpty(svg, width, height) {
  svg.append(svgElement("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "empty" }, t("noData")));
}

function drawValueAxis(svg, box, scale) {
  for (let value = 0; value <= scale.top + 1e-9; value += scale.step) {
    const y = box.bottom - ((box.bottom - box.top) * value) / scale.top;
    svg.append(svgElement("line", { x1: box.left, x2: box.right, y1: y, y2: y, class: "grid-line" }));
    svg.append(svgElement("text", { x: box.left - 6, y: y + 4, "text-anchor": "end", class: "axis" }, formatNumber(value)));
  }
}

function legend(container, series) {
  const box = element("div", { class: "legend" });
  for (const name of series) {
    const item = element("span");
    item.append(element("span", { class: `swatch ${name}` }), document.createTextNode(t(name)));
    box.append(item);
  }
  container.append(box);
}

function drawGroupedBars(container, name, rows, series) {
  const width = 720;
  const height = 260;
  const box = { left: 40, right: width - 10, top: 16, bottom: height - 40 };
  const svg = chartFrame(container, name, width, height);
  if (!rows.length) return drawEmpty(svg, width, height);
  const scale = niceScale(Math.max(...rows.flatMap((row) => series.map((s) => row[s]))));
  const maximum = scale.top;
  drawValueAxis(svg, box, scale);
  const band = (box.right - box.left) / rows.length;
  const barWidth = Math.max(1, (band * 0.8) / series.length);
  const labelEvery = Math.ceil(rows.length / Math.max(1, Math.floor((box.right - box.left) / 44)));
  rows.forEach((row, index) => {
    const x0 = box.left + index * band + band * 0.1;
    series.forEach((serie, s) => {
      const value = row[serie];
      const barHeight = ((box.bottom - box.top) * value) / maximum;
      const x = x0 + s * barWidth;
      const bar = svgElement("rect", {
        x, y: box.bottom - barHeight, width: Math.max(barWidth - 1, 1), height: barHeight, class: serie,
        "data-key": `${row.period}/${serie}`, "data-value": value,
      });
      bar.append(svgElement("title", {}, `${row.period} · ${t(serie)}: ${value}`));
      svg.append(bar);
      if (value > 0 && barWidth >= 9) {
        svg.append(svgElement("text", { x: x + barWidth / 2, y: box.bottom - barHeight - 3, "text-anchor": "middle", class: "value-label" }, formatNumber(value)));
      }
    });
    if (index % labelEvery === 0) {
      svg.append(svgElement("text", { x: x0 + band * 0.4, y: box.bottom + 16, "text-anchor": "middle", class: "axis" }, shortPeriod(row.period)));
    }
  });
  legend(container, series);
}

function drawCycleTimeLines(container, months) {
  const width = 720;
  const height = 260;
  const box = { left: 40, right: width - 20, top: 20, bottom: height - 40 };
  const svg = chartFrame(container, "cycle-time", width, height);
  if (!months.length) return drawEmpty(svg, width, height);
  const series = ["median", "p90"];
  const values = months.flatMap((month) => [month.median_hours, month.p90_hours]).filter((v) => v !== null);
  const scale = niceScale(Math.max(0, ...values));
  const maximum = scale.top;
  drawValueAxis(svg, box, scale);
  const step = months.length > 1 ? (box.right - box.left - 40) / (months.length - 1) : 0;
  const xOf = (index) => box.left + 20 + index * step + (months.length > 1 ? 0 : (box.right - box.left - 40) / 2);
  const yOf = (value) => box.bottom - ((box.bottom - box.top) * value) / maximum;
  for (const serie of series) {
    const field = `${serie}_hours`;
    const points = months.map((month, index) => [index, month[field]]).filter(([, value]) => value !== null);
    svg.append(svgElement("polyline", { class: `line ${serie}`, points: points.map(([i, v]) => `${xOf(i)},${yOf(v)}`).join(" ") }));
    for (const [index, value] of points) {
      const month = months[index];
      const dot = svgElement("circle", { cx: xOf(index), cy: yOf(value), r: 4, class: serie, "data-key": `${month.month}/${serie}`, "data-value": value });
      dot.append(svgElement("title", {}, `${month.month} · ${t(serie)}: ${formatHours(value)} (${month.tasks} ${t("tasks")})`));
      svg.append(dot, svgElement("text", { x: xOf(index) + 6, y: yOf(value) - 6, class: "value-label" }, formatNumber(value)));
    }
  }
  months.forEach((month, index) => {
    svg.append(svgElement("text", { x: xOf(index), y: box.bottom + 16, "text-anchor": "middle", class: "axis" }, month.month));
  });
  legend(container, series);
}

function drawHorizontalBars(container, name, items) {
  const width = 640;
  const rowHeight = 26;
  const shown = items.slice(0, 10);
  const height = Math.max(60, shown.length * rowHeight + 10);
  const box = { left: 250, right: width - 170 };
  const svg = chartFrame(container, name, width, height);
  if (!shown.length) return drawEmpty(svg, width, height);
  const maximum = niceScale(Math.max(...shown.map((item) => item.row.median_hours ?? 0))).top;
  shown.forEach((item, index) => {
    const y = 5 + index * rowHeight;
    const value = item.row.median_hours ?? 0;
    const length = ((box.right - box.left) * value) / maximum;
    svg.append(svgElement("text", { x: box.left - 8, y: y + 15, "text-anchor": "end", class: "bar-label" }, shortLabel(item.label)));
    const bar = svgElement("rect", { x: box.left, y: y + 3, width: Math.max(length, 1), height: rowHeight - 8, class: "wait", "data-key": item.key, "data-value": value });
    bar.append(svgElement("title", {}, `${item.label}: ${t("median")} ${formatHours(item.row.median_hours)}, ${t("p90")} ${formatHours(item.row.p90_hours)}, ${item.row.acts} ${t("acts")}`));
    svg.append(bar);
    const text = `${formatHours(item.row.median_hours)} · ${t("p90")} ${formatNumber(item.row.p90_hours)} · ${item.row.acts} ${t("acts")}`;
    svg.append(svgElement("text", { x: box.left + length + 6, y: y + 15, class: "value-label" }, text));
  });
}

// -- lists --------------------------------------------------------------------------------

function taskButton(taskId, label) {
  const button = element("button", { type: "button", class: "link", "data-task-id": taskId }, label);
  button.addEventListener("click", () => openTask(taskId));
  return button;
}

function table(headings, rows, name) {
  if (!rows.length) return element("p", { class: "muted", "data-empty": name }, t("none"));
  const made = element("table", { "data-list": name });
  const head = element("tr");
  for (const heading of headings) head.append(element("th", {}, t(heading)));
  made.append(element("thead"), element("tbody"));
  made.tHead.append(head);
  made.tBodies[0].append(...rows);
  return made;
}

function cell(content, className = null) {
  const td = element("td", className ? { class: className } : {});
  if (content instanceof Node) td.append(content);
  else td.textContent = content ?? "–";
  return td;
}

function renderRules(rules) {
  $("#rules").replaceChildren(...rules.map((rule) => {
    const title = state.lang === "zh" ? rule.title_zh : rule.title;
    const chip = element("span", { class: rule.breaches ? "chip hit" : "chip", "data-rule": rule.rule, "data-value": rule.breaches, title: rule.description }, `${title}: ${rule.breaches}`);
    return chip;
  }));
}

function ruleTitle(ruleId) {
  const rule = (state.compliance?.rules ?? []).find((r) => r.rule === ruleId);
  if (!rule) return ruleId;
  return state.lang === "zh" ? rule.title_zh : rule.title;
}

function renderBreaches(breaches) {
  const rows = breaches.map((breach) => {
    const row = element("tr", { "data-rule": breach.rule, "data-task-id": breach.task_id ?? "" });
    const task = breach.task_id ? taskButton(breach.task_id, breach.task_id.slice(0, 8)) : "–";
    row.append(cell(ruleTitle(breach.rule)), cell(task), cell(formatTime(breach.at)), cell(breach.actor), cell(breach.evidence));
    return row;
  });
  $("#breaches").replaceChildren(table(["rule", "task", "when", "actor", "evidence"], rows, "breaches"));
}

function renderTaskTable(container, name, tasks, hoursField, hoursHeading) {
  const rows = tasks.map((task) => {
    const row = element("tr", { "data-task-id": task.task_id });
    row.append(
      cell(taskButton(task.task_id, task.title || task.task_id)), cell(templateName(task.template_id)),
      cell(task.department), cell(task.current_step), cell((task.pending ?? []).join(", ")),
      cell(formatTime(task.due_at)), cell(formatHours(task[hoursField]), "num"),
    );
    return row;
  });
  const headings = ["task", "template", "department", "step", "waitingFor", "due", hoursHeading];
  container.replaceChildren(table(headings, rows, name));
}

// -- drill-down: one task's state, timeline and evidence pack -----------------------------

async function openTask(taskId) {
  state.task = taskId;
  const panel = $("#drill");
  panel.hidden = false;
  panel.dataset.taskId = taskId;
  panel.dataset.state = "loading";
  $("#drill-state").replaceChildren(element("dd", {}, t("loading")));
  $("#drill-timeline").replaceChildren();
  resetPack();
  try {
    const [task, timeline] = await Promise.all([
      fetchJson(`/v1/tasks/${encodeURIComponent(taskId)}`),
      fetchJson(`/v1/tasks/${encodeURIComponent(taskId)}/timeline`),
    ]);
    if (state.task !== taskId) return;
    renderTaskState(task);
    renderTimeline(timeline.entries);
    panel.dataset.state = "ready";
  } catch (error) {
    panel.dataset.state = "error";
    handleFailure(error);
  }
}

function renderTaskState(task) {
  const facts = [
    ["task", task.title], ["status", t(`status_${task.status}`)],
    ["template", task.template ? `${task.template.name} (v${task.template.version})` : "–"],
    ["initiator", task.initiator], ["step", task.current_step], ["pending", task.pending.join(", ")],
    ["deadline", formatTime(task.effective_deadline)],
  ];
  const list = [];
  for (const [label, value] of facts) list.push(element("dt", {}, t(label)), element("dd", {}, value || "–"));
  list.push(element("dt", {}, "ID"), element("dd", {}, task.task_id));
  $("#drill-state").replaceChildren(...list);
  $("#drill-state").dataset.status = task.status;
}

function renderTimeline(entries) {
  $("#drill-timeline").replaceChildren(...entries.map((entry) => {
    const item = element("li", { "data-type": entry.type, "data-sequence": entry.sequence });
    const action = state.lang === "zh" ? entry.action_zh : entry.action;
    item.append(
      element("div", { class: "when" }, `${formatTime(entry.server_time)} · ${t("log")} ${entry.leaf_index ?? "–"}`),
      element("div", { class: "what" }, `${entry.actor.name} — ${action}`),
    );
    if (entry.details) item.append(element("div", {}, entry.details));
    const where = [entry.ip, entry.device, entry.identity].filter(Boolean).join(" · ");
    if (where) item.append(element("div", { class: "where" }, where));
    return item;
  }));
}

function resetPack() {
  const link = $("#pack-link");
  if (link.href) URL.revokeObjectURL(link.href);
  link.removeAttribute("href");
  link.hidden = true;
  $("#pack-status").textContent = "";
  $("#make-pack").disabled = false;
}

async function makeEvidencePack() {
  const taskId = state.task;
  const button = $("#make-pack");
  button.disabled = true;
  $("#pack-status").textContent = t("makingPack");
  try {
    const made = await (await callApi(`/v1/tasks/${encodeURIComponent(taskId)}/evidence-packs`, {
      method: "POST", headers: { "Idempotency-Key": newIdempotencyKey() },
    })).json();
    const blob = await (await callApi(made.download)).blob();
    if (state.task !== taskId) return;
    const link = $("#pack-link");
    link.href = URL.createObjectURL(blob);
    link.download = `evidence-${taskId}.zip`;
    link.dataset.packId = made.pack_id;
    link.hidden = false;
    $("#pack-status").textContent = `${t("packReady")} · ${(made.size / 1024).toFixed(0)} KiB · SHA-256 ${made.sha256.slice(0, 16)}…`;
    link.click();
  } catch (error) {
    $("#pack-status").textContent = "";
    handleFailure(error);
  } finally {
    button.disabled = false;
  }
}

// -- language -----------------------------------------------------------------------------

function applyLanguage(lang) {
  state.lang = TEXT[lang] ? lang : "en";
  localStorage.setItem(LANG_STORAGE, state.lang);
  document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
  document.title = `${t("title")} · Evidence Ledger`;
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const button of document.querySelectorAll("[data-lang]")) button.setAttribute("aria-pressed", String(button.dataset.lang === state.lang));
  renderAll();
}

// -- wiring -------------------------------------------------------------------------------

function start() {
  const stored = localStorage.getItem(LANG_STORAGE);
  applyLanguage(stored || (navigator.language.startsWith("zh") ? "zh" : "en"));
  for (const button of document.querySelectorAll("[data-lang]")) {
    button.addEventListener("click", () => applyLanguage(button.dataset.lang));
  }
  for (const button of document.querySelectorAll("[data-granularity]")) {
    button.addEventListener("click", () => {
      state.granularity = button.dataset.granularity;
      for (const other of document.querySelectorAll("[data-granularity]")) other.setAttribute("aria-pressed", String(other === button));
      renderAll();
    });
  }
  $("#key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY_STORAGE, $("#api-key").value.trim());
    $("#api-key").value = "";
    showSignedIn(true);
    loadDashboard();
  });
  $("#sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORAGE);
    Object.assign(state, { kpis: null, compliance: null, choices: null });
    showError("");
    showSignedIn(false);
  });
  $("#filters").addEventListener("change", () => loadDashboard());
  $("#filters").addEventListener("reset", () => setTimeout(loadDashboard, 0));
  $("#drill-close").addEventListener("click", () => {
    $("#drill").hidden = true;
    state.task = null;
  });
  $("#make-pack").addEventListener("click", makeEvidencePack);
  if (sessionStorage.getItem(KEY_STORAGE)) {
    showSignedIn(true);
    loadDashboard();
  }
}

document.addEventListener("DOMContentLoaded", start);
