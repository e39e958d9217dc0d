/*
 * The agent console (/console/). Plain JavaScript, no build step, like static/widget.js.
 *
 * The page (templates/console/index.html) is rendered by Django with its static text; this
 * script fills it from the console websocket (/ws/console/, session-authenticated). Every frame
 * is JSON with a "type". What arrives is state: the queue, the agent's conversations, the open
 * conversation with its transcript, and (supervisors) the agents' load. A dropped socket
 * reconnects with backoff and opens the same conversation again; the server then sends the
 * full state, which replaces what is shown (messages are keyed by id, so none shows twice).
 *
 * Text from the server (messages, summaries, names) is only ever set as textContent.
 */
(function () {
  "use strict";

  var BACKOFF_MS = [1000, 2000, 4000, 8000, 15000, 30000];
  var STABLE_MS = 10000; // a socket open this long resets the backoff
  var TYPING_IDLE_MS = 3000; // "typing off" after this long without a keystroke
  var TYPING_SHOWN_MAX_MS = 30000; // hide the customer's indicator if its "off" never comes
  var MACRO_DEBOUNCE_MS = 150;
  var TOAST_MS = 6000;
  var MAX_CHARS = 4000; // the server's limit for one message (code points)
  var SLA_AT_RISK_SHARE = 0.75; // as the server's AGENTS["SLA_AT_RISK_SHARE"]
  var SLA_ORDER = { ok: 0, at_risk: 1, breached: 2 };

  // Every string the script shows, in both languages. The page's own text is translated by
  // Django ({% translate %} in the template).
  var STRINGS = {
    en: {
      connecting: "Connecting…",
      reconnecting: "Connection lost. Reconnecting…",
      refused: "The console could not sign you in. Reload the page to log in again.",
      claim: "Claim",
      view: "View",
      open: "Open",
      claimed: "Conversation claimed.",
      taken: "Another agent has already taken this conversation.",
      transferred: "Conversation transferred.",
      toBotDone: "The conversation is back with the bot.",
      closedDone: "Conversation closed.",
      presenceDone: "Presence: {value}",
      waited: "Waiting for {time}",
      negative: "Upset",
      negativeLabel: "The customer seems upset",
      slaAtRisk: "SLA at risk",
      slaBreached: "SLA breached",
      noReplyYet: "No reply yet",
      conversation: "Conversation {id}",
      noIntent: "(no intent)",
      customer: "Customer",
      bot: "Bot",
      agent: "Agent",
      system: "System",
      you: "You",
      customerTyping: "The customer is typing…",
      sending: "Sending…",
      queued: "Will be sent when the connection is back",
      notSent: "Not sent",
      decision: "Decision: {value}",
      intent: "Intent: {value}",
      confidence: "Confidence: {value}",
      generation: "Generation: {value}",
      grounding: "Grounding: {value}",
      entities: "Entities: {value}",
      sources: "Sources:",
      language: "Language: {value}",
      channel: "Channel: {value}",
      locale: "Locale: {value}",
      handoffReason: "Handoff: {value}",
      withAgent: "Agent: {value}",
      resolution: "Resolution: {value}",
      csat: "Rating: {value} / 5",
      csatRequested: "Rating requested",
      status_bot: "With the bot",
      status_waiting_agent: "Waiting for an agent",
      status_agent: "With an agent",
      status_closed: "Closed",
      by: "by {name}",
      to: "to {name}",
      eventNote: "“{note}”",
      assistAsking: "Asking for suggestions…",
      assistNone: "No suggestions for this conversation.",
      insert: "Insert",
      insertLabel: "Insert suggestion {n} into the reply",
      kind_knowledge: "From the knowledge base",
      kind_generated: "Drafted",
      macrosNone: "No canned reply matches.",
      agentOption: "{name} ({open}/{capacity}, {presence})",
      presence_online: "Online",
      presence_away: "Away",
      presence_offline: "Offline",
      allLanguages: "all",
      never: "never",
      empty: "Type a reply first.",
      tooLong: "A message can be at most {max} characters. This one has {n}.",
      offline: "You are offline. The action was not sent.",
      notYours: "This conversation is not yours to work on.",
      genericError: "Something went wrong. Please try again.",
      queueTitle: "({n}) {title}",
      reveal: "Show what was redacted",
      revealed: "Shown to you only; the viewing is recorded in the audit log.",
    },
    zh: {
      connecting: "正在连接…",
      reconnecting: "连接已断开，正在重新连接…",
      refused: "控制台无法确认您的登录状态，请刷新页面重新登录。",
      claim: "接入",
      view: "查看",
      open: "打开",
      claimed: "已接入该对话。",
      taken: "该对话已被其他客服接入。",
      transferred: "对话已转接。",
      toBotDone: "对话已交回智能助手。",
      closedDone: "对话已结束。",
      presenceDone: "状态：{value}",
      waited: "已等待 {time}",
      negative: "情绪不满",
      negativeLabel: "客户情绪不满",
      slaAtRisk: "即将超时",
      slaBreached: "已超时",
      noReplyYet: "尚未回复",
      conversation: "对话 {id}",
      noIntent: "（无意图）",
      customer: "客户",
      bot: "智能助手",
      agent: "客服",
      system: "系统",
      you: "我",
      customerTyping: "客户正在输入…",
      sending: "发送中…",
      queued: "连接恢复后自动发送",
      notSent: "未发送",
      decision: "决策：{value}",
      intent: "意图：{value}",
      confidence: "置信度：{value}",
      generation: "生成：{value}",
      grounding: "依据得分：{value}",
      entities: "实体：{value}",
      sources: "参考文章：",
      language: "语言：{value}",
      channel: "渠道：{value}",
      locale: "区域：{value}",
      handoffReason: "转人工原因：{value}",
      withAgent: "客服：{value}",
      resolution: "处理结果：{value}",
      csat: "评分：{value} / 5",
      csatRequested: "已请求评分",
      status_bot: "智能助手接待中",
      status_waiting_agent: "等待人工客服",
      status_agent: "人工客服接待中",
      status_closed: "已结束",
      by: "操作人：{name}",
      to: "转给：{name}",
      eventNote: "“{note}”",
      assistAsking: "正在获取建议回复…",
      assistNone: "该对话暂无建议回复。",
      insert: "插入",
      insertLabel: "将建议 {n} 插入回复框",
      kind_knowledge: "来自知识库",
      kind_generated: "自动生成",
      macrosNone: "没有匹配的快捷回复。",
      agentOption: "{name}（{open}/{capacity}，{presence}）",
      presence_online: "在线",
      presence_away: "离开",
      presence_offline: "离线",
      allLanguages: "全部",
      never: "从未",
      empty: "请先输入回复内容。",
      tooLong: "每条消息最多 {max} 个字符，当前 {n} 个。",
      offline: "网络已断开，操作未发送。",
      notYours: "该对话不由您负责。",
      genericError: "出错了，请重试。",
      queueTitle: "（{n}）{title}",
      reveal: "显示被遮盖的内容",
      revealed: "仅您可见，本次查看已记入审计日志。",
    },
  };

  // ---- configuration from the page -------------------------------------------------------

  var configNode = document.getElementById("console-config");
  if (!configNode || window.csConsole) return;
  var config = JSON.parse(configNode.textContent);
  var lang = pickLanguage([config.language, document.documentElement.getAttribute("lang")]);
  var T = STRINGS[lang];
  var pageTitle = document.title;

  function pickLanguage(candidates) {
    for (var i = 0; i < candidates.length; i++) {
      var value = (candidates[i] || "").trim().toLowerCase();
      if (value) return value.indexOf("zh") === 0 ? "zh" : "en";
    }
    return "en";
  }

  function t(key, values) {
    var text = T[key] || STRINGS.en[key] || key;
    return text.replace(/\{(\w+)\}/g, function (_, name) {
      var value = values && values[name];
      if (value === undefined || value === null) return "";
      return typeof value === "number" ? value.toLocaleString(lang) : String(value);
    });
  }

  function $(id) {
    return document.getElementById(id);
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (name) {
        var value = attrs[name];
        if (value === null || value === undefined || value === false) return;
        if (name === "text") node.textContent = value;
        else node.setAttribute(name, value === true ? "" : value);
      });
    }
    (children || []).forEach(function (child) {
      if (child === null || child === undefined || child === false) return;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    // crypto.randomUUID is missing outside secure contexts (plain http on a LAN name).
    var bytes = crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    var hex = Array.prototype.map
      .call(bytes, function (b) {
        return (b + 0x100).toString(16).slice(1);
      })
      .join("");
    return [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20), hex.slice(20)].join("-");
  }

  function safeUrl(url) {
    try {
      var parsed = new URL(url, location.href);
      return parsed.protocol === "https:" || parsed.protocol === "http:" ? parsed.href : null;
    } catch (e) {
      return null;
    }
  }

  function formatDuration(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    var h = Math.floor(seconds / 3600);
    var m = Math.floor((seconds % 3600) / 60);
    var s = seconds % 60;
    var mmss = (h ? String(m).padStart(2, "0") : String(m)) + ":" + String(s).padStart(2, "0");
    return h ? h + ":" + mmss : mmss;
  }

  function formatTime(iso) {
    if (!iso) return "";
    var date = new Date(iso);
    return isNaN(date) ? "" : date.toLocaleString(lang === "zh" ? "zh-CN" : "en");
  }

  function formatScore(value) {
    return typeof value === "number" ? value.toFixed(2) : String(value);
  }

  function firstLine(text) {
    return String(text || "").split(/\r?\n/)[0];
  }

  function charCount(text) {
    return Array.from(text).length; // code points, as the server counts
  }

  // ---- DOM of the page -------------------------------------------------------------------

  var dom = {
    connection: $("connection"),
    presence: $("presence"),
    queueList: $("queue-list"),
    queueEmpty: $("queue-empty"),
    queueCount: $("queue-count"),
    mineList: $("mine-list"),
    mineEmpty: $("mine-empty"),
    mineCount: $("mine-count"),
    noConversation: $("no-conversation"),
    pane: $("conversation-pane"),
    heading: $("conversation-heading"),
    meta: $("conversation-meta"),
    summary: $("conversation-summary"),
    transcript: $("transcript"),
    eventsList: $("events-list"),
    eventsCount: $("events-count"),
    othersList: $("others-list"),
    othersCount: $("others-count"),
    typing: $("typing"),
    claimBar: $("claim-bar"),
    claimOpen: $("claim-open"),
    composer: $("composer"),
    textarea: $("composer-text"),
    macroList: $("macro-list"),
    send: $("send"),
    transferOpen: $("transfer-open"),
    transferForm: $("transfer-form"),
    transferTo: $("transfer-to"),
    transferNote: $("transfer-note"),
    transferCancel: $("transfer-cancel"),
    toBot: $("to-bot"),
    resolution: $("resolution"),
    closeConversation: $("close-conversation"),
    assist: $("assist"),
    suggestions: $("suggestions"),
    agentsBody: $("agents-body"), // supervisors only
    toasts: $("toasts"),
  };

  // ---- state -----------------------------------------------------------------------------

  var state = {
    me: { id: null, name: config.name, supervisor: !!config.supervisor, presence: null },
    resolutions: [],
    pingSeconds: 20,
    slaSeconds: 120,
    queue: [], // items as sent, each with receivedAt (performance.now() at receipt)
    mine: [],
    agents: [],
    openId: null, // the conversation the agent has open; opened again after a reconnect
    conversation: null, // the last "conversation" object for openId
    messages: new Map(), // render key (id, else seq) -> message
    revealed: {}, // message id -> the original text the agent asked to see (audited)
    events: [],
    others: [],
    outbox: [], // agent messages not yet acknowledged: {client_id, conversation_id, text, state}
    customerTyping: false,
    csatRequested: false,
    assist: { conversationId: null, asking: false, suggestions: null },
    macros: { items: [], index: -1, query: null },
    lastClaimId: null,
  };
  var socket = null;
  var socketOpenedAt = 0;
  var attempts = 0;
  var retryTimer = null;
  var pingTimer = null;
  var refused = false;
  var typingSent = false;
  var typingTimer = null;
  var customerTypingTimer = null;
  var macroTimer = null;
  var transcriptNodes = new Map(); // render key -> {node, signature}

  // ---- socket ----------------------------------------------------------------------------

  function isOpen() {
    return socket !== null && socket.readyState === WebSocket.OPEN;
  }

  function sendFrame(frame) {
    if (!isOpen()) return false;
    socket.send(JSON.stringify(frame));
    return true;
  }

  // An action the agent asked for: says so when it could not go out.
  function act(frame) {
    if (sendFrame(frame)) return true;
    showToast(t("offline"), true);
    return false;
  }

  function setConnection(kind) {
    dom.connection.hidden = kind === "open";
    if (kind !== "open") dom.connection.textContent = t(kind);
  }

  function connect() {
    if (refused || (socket && socket.readyState <= WebSocket.OPEN)) return;
    clearTimeout(retryTimer);
    retryTimer = null;
    setConnection(attempts ? "reconnecting" : "connecting");
    var url = location.origin.replace(/^http/, "ws") + config.ws_path;
    var ws;
    try {
      ws = new WebSocket(url);
    } catch (e) {
      scheduleReconnect();
      return;
    }
    socket = ws;
    ws.onopen = function () {
      socketOpenedAt = Date.now();
      setConnection("open");
    };
    ws.onmessage = function (event) {
      if (socket !== ws) return;
      var frame;
      try {
        frame = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      if (frame && typeof frame.type === "string") handleFrame(frame);
    };
    ws.onclose = function (event) {
      if (socket !== ws) return;
      socket = null;
      clearInterval(pingTimer);
      typingSent = false;
      showCustomerTyping(false);
      state.outbox.forEach(function (item) {
        if (item.state === "sending") item.state = "queued";
      });
      renderTranscript();
      renderControls();
      // 4401/4403: the session is gone or the user is no longer an agent; retrying cannot help.
      if (event.code === 4401 || event.code === 4403) {
        refused = true;
        setConnection("refused");
        return;
      }
      if (socketOpenedAt && Date.now() - socketOpenedAt > STABLE_MS) attempts = 0;
      socketOpenedAt = 0;
      scheduleReconnect();
    };
  }

  function scheduleReconnect() {
    var base = BACKOFF_MS[Math.min(attempts, BACKOFF_MS.length - 1)];
    attempts += 1;
    setConnection("reconnecting");
    clearTimeout(retryTimer);
    retryTimer = setTimeout(connect, base * (0.75 + Math.random() * 0.5));
  }

  function reconnectNow() {
    if (refused || (socket && socket.readyState <= WebSocket.OPEN)) return;
    attempts = 0;
    connect();
  }

  // ---- frames from the server ------------------------------------------------------------

  function handleFrame(frame) {
    switch (frame.type) {
      case "hello":
        onHello(frame);
        break;
      case "queue":
        onQueue(frame);
        break;
      case "mine":
        state.mine = Array.isArray(frame.items) ? frame.items : [];
        renderMine();
        break;
      case "agents":
        state.agents = Array.isArray(frame.items) ? frame.items : [];
        renderAgents();
        renderTransferTargets();
        break;
      case "conversation":
        onConversation(frame);
        break;
      case "chat":
        onChat(frame);
        break;
      case "ack":
        onAck(frame);
        break;
      case "assist":
        onAssist(frame);
        break;
      case "macros":
        onMacros(frame);
        break;
      case "done":
        onDone(frame);
        break;
      case "error":
        onError(frame);
        break;
      case "revealed":
        if (frame.conversation_id !== state.openId) return;
        state.revealed[frame.message_id] = String(frame.text || "");
        renderTranscript();
        break;
      default:
        return; // a newer server's frame: ignore it
    }
  }

  function onHello(frame) {
    var me = frame.me || {};
    state.me = {
      id: me.id,
      name: me.name || config.name,
      supervisor: !!me.supervisor,
      presence: me.presence,
      capacity: me.capacity,
      languages: me.languages || [],
    };
    state.resolutions = Array.isArray(frame.resolutions) ? frame.resolutions : [];
    if (frame.ping_seconds > 0) state.pingSeconds = frame.ping_seconds;
    if (frame.sla_seconds > 0) state.slaSeconds = frame.sla_seconds;
    $("me-name").textContent = state.me.name;
    if (me.presence) dom.presence.value = me.presence;
    dom.presence.disabled = false;
    renderResolutions();
    clearInterval(pingTimer);
    pingTimer = setInterval(function () {
      sendFrame({ type: "ping" });
    }, state.pingSeconds * 1000);
    // After a reconnect: the open conversation again (full state comes back), then whatever
    // was typed while the socket was down (the server stores a client_id once).
    if (state.openId) sendFrame({ type: "open", conversation_id: state.openId });
    flushOutbox();
    renderControls();
  }

  function onQueue(frame) {
    var now = performance.now();
    state.queue = (Array.isArray(frame.items) ? frame.items : []).map(function (item) {
      return Object.assign({}, item, { receivedAt: now });
    });
    renderQueue();
  }

  function onConversation(frame) {
    var conversation = frame.conversation;
    if (!conversation || conversation.id !== state.openId) return; // the agent moved on
    var switched = !state.conversation || state.conversation.id !== conversation.id;
    if (switched) {
      state.messages.clear();
      state.revealed = {};
      state.csatRequested = false;
      showCustomerTyping(false);
    }
    state.conversation = conversation;
    (frame.messages || []).forEach(upsertMessage);
    state.events = Array.isArray(frame.events) ? frame.events : [];
    state.others = Array.isArray(frame.other_conversations) ? frame.other_conversations : [];
    renderConversation();
    // Suggestions are asked for once per opening, not on every refresh of the same one.
    if (state.assist.conversationId !== conversation.id && conversation.status !== "closed") {
      requestAssist();
    }
  }

  function onChat(frame) {
    var inner = frame.frame || {};
    if (!state.conversation || frame.conversation_id !== state.conversation.id) return;
    switch (inner.type) {
      case "message":
        if (inner.message && inner.message.role === "customer") showCustomerTyping(false);
        upsertMessage(inner.message);
        renderTranscript();
        break;
      case "typing":
        if (inner.role === "customer") showCustomerTyping(!!inner.on);
        break;
      case "status":
        state.conversation.status = inner.status;
        if (inner.status !== "agent") {
          state.conversation.agent_id = null;
          state.conversation.agent_name = "";
        } else if (inner.agent) {
          state.conversation.agent_name = inner.agent;
        }
        if (inner.status === "closed") showCustomerTyping(false);
        renderHeader();
        renderControls();
        break;
      case "csat_request":
        state.csatRequested = true;
        renderHeader();
        break;
      case "csat_done": // the customer rated the conversation (1-5)
        if (typeof inner.score === "number") state.conversation.csat = inner.score;
        renderHeader();
        break;
      default:
        return; // drafts of generated answers and newer frames: the stored message follows
    }
  }

  function onAck(frame) {
    dropFromOutbox(frame.client_id);
    if (state.conversation && frame.conversation_id === state.conversation.id) {
      upsertMessage(frame.message);
    }
    renderTranscript();
  }

  function onAssist(frame) {
    if (frame.conversation_id !== state.openId) return;
    state.assist = {
      conversationId: frame.conversation_id,
      asking: false,
      suggestions: Array.isArray(frame.suggestions) ? frame.suggestions : [],
    };
    renderSuggestions();
  }

  function onMacros(frame) {
    var query = macroQuery();
    if (frame.conversation_id !== state.openId || query === null) return;
    state.macros.items = Array.isArray(frame.items) ? frame.items : [];
    state.macros.index = state.macros.items.length ? 0 : -1;
    renderMacros();
  }

  function onDone(frame) {
    var id = frame.conversation_id;
    switch (frame.action) {
      case "claim":
        showToast(t("claimed"));
        openConversation(id);
        break;
      case "transfer":
      case "to_bot":
        showToast(t(frame.action === "transfer" ? "transferred" : "toBotDone"));
        hideTransfer();
        if (id === state.openId) {
          // A supervisor still sees it; an agent no longer does.
          if (state.me.supervisor) sendFrame({ type: "open", conversation_id: id });
          else closePane();
        }
        break;
      case "close":
        showToast(t("closedDone"));
        if (id === state.openId) sendFrame({ type: "open", conversation_id: id });
        break;
      case "presence":
        state.me.presence = dom.presence.value;
        break;
      default:
        break;
    }
  }

  function onError(frame) {
    if (frame.action === "claim" && frame.code === "taken") {
      showToast(t("taken"), true);
      if (state.lastClaimId && state.lastClaimId === state.openId && !state.me.supervisor) {
        closePane();
      }
      sendFrame({ type: "refresh" });
      return;
    }
    if (frame.action === "message") {
      state.outbox.forEach(function (item) {
        var match = frame.client_id ? item.client_id === frame.client_id : item.state === "sending";
        if (match) {
          item.state = "failed";
          item.error = frame.reason || "";
        }
      });
      renderTranscript();
    }
    if (frame.action === "open" && frame.code === "not_found") closePane();
    if (frame.action === "presence" && state.me.presence) dom.presence.value = state.me.presence;
    if (frame.action === "assist") {
      state.assist.asking = false;
      renderSuggestions();
    }
    showToast(frame.reason || t("genericError"), true);
  }

  // ---- transcript ------------------------------------------------------------------------

  function messageKey(message) {
    return message.id ? "m:" + message.id : "s:" + message.seq;
  }

  // One message per id: a chat frame and an ack can both bring the agent's own message, and a
  // reconnect brings every message again. The first, fuller copy keeps fields a later, smaller
  // frame does not carry.
  function upsertMessage(message) {
    if (!message || (!message.id && typeof message.seq !== "number")) return;
    var key = messageKey(message);
    var known = state.messages.get(key);
    var merged = Object.assign({}, known || {}, message);
    if (known) {
      Object.keys(message).forEach(function (name) {
        if (message[name] === null || message[name] === undefined) merged[name] = known[name];
      });
    }
    // The same seq under another key is the same message seen before its id was known.
    state.messages.forEach(function (other, otherKey) {
      if (otherKey !== key && typeof merged.seq === "number" && other.seq === merged.seq) {
        state.messages.delete(otherKey);
      }
    });
    state.messages.set(key, merged);
    if (merged.client_id) dropFromOutbox(merged.client_id);
  }

  function dropFromOutbox(clientId) {
    if (!clientId) return;
    state.outbox = state.outbox.filter(function (item) {
      return item.client_id !== clientId;
    });
  }

  function roleLabel(message) {
    if (message.role === "agent") {
      var author = message.author;
      var name = author && typeof author === "object" ? author.name : author;
      return name || t("agent");
    }
    return t(message.role === "customer" || message.role === "bot" ? message.role : "system");
  }

  function sourceLinks(sources) {
    return (sources || [])
      .filter(function (source) {
        return source && source.url && safeUrl(source.url);
      })
      .map(function (source) {
        return el("a", {
          href: safeUrl(source.url),
          target: "_blank",
          rel: "noopener",
          text: source.title || source.url,
        });
      });
  }

  function entityText(entity) {
    if (entity && typeof entity === "object") {
      return (entity.kind || entity.type || "?") + "=" + (entity.value !== undefined ? entity.value : "");
    }
    return String(entity);
  }

  // What the engine decided and what the answer was made of, so the agent sees why the bot
  // said what it said.
  function buildDecision(message) {
    if (message.role !== "bot" && message.role !== "customer") return null;
    var parts = [];
    if (message.decision) parts.push(el("span", { text: t("decision", { value: message.decision }) }));
    if (message.intent) parts.push(el("span", { text: t("intent", { value: message.intent }) }));
    if (typeof message.confidence === "number") {
      parts.push(el("span", { text: t("confidence", { value: formatScore(message.confidence) }) }));
    }
    if (message.generation_status) {
      parts.push(el("span", { text: t("generation", { value: message.generation_status }) }));
    }
    if (typeof message.grounding_score === "number") {
      parts.push(el("span", { text: t("grounding", { value: formatScore(message.grounding_score) }) }));
    }
    if (Array.isArray(message.entities) && message.entities.length) {
      parts.push(el("span", { text: t("entities", { value: message.entities.map(entityText).join(", ") }) }));
    }
    var links = message.role === "bot" ? sourceLinks(message.sources) : [];
    if (links.length) parts.push(el("span", { class: "sources" }, [t("sources") + " "].concat(links)));
    return parts.length ? el("div", { class: "decision" }, parts) : null;
  }

  function buildMessage(message) {
    var role = message.role || "system";
    var node = el("div", {
      class: "msg " + role,
      "data-id": message.id || null,
      "data-seq": String(message.seq),
      "data-role": role,
    });
    if (role !== "system") node.appendChild(el("div", { class: "who", text: roleLabel(message) }));
    var original = message.id ? state.revealed[message.id] : undefined;
    var bubble = el("div", { class: "bubble", text: original !== undefined ? original : message.text || "" });
    var created = formatTime(message.created);
    if (created) bubble.title = created;
    node.appendChild(bubble);
    if (original !== undefined) {
      node.appendChild(el("div", { class: "state", text: t("revealed") }));
    } else if (message.redacted && role === "customer" && message.id) {
      var button = el("button", { type: "button", class: "link reveal", text: t("reveal") });
      button.addEventListener("click", function () {
        act({ type: "reveal", conversation_id: state.openId, message_id: message.id });
      });
      node.appendChild(button);
    }
    var decision = buildDecision(message);
    if (decision) node.appendChild(decision);
    return node;
  }

  function buildPending(item) {
    var note =
      item.state === "failed"
        ? t("notSent") + (item.error ? " · " + item.error : "")
        : item.state === "queued"
          ? t("queued")
          : t("sending");
    return el(
      "div",
      {
        class: "msg agent pending" + (item.state === "failed" ? " failed" : ""),
        "data-client-id": item.client_id,
        "data-role": "agent",
      },
      [
        el("div", { class: "who", text: t("you") }),
        el("div", { class: "bubble", text: item.text }),
        el("div", { class: "state", text: note }),
      ]
    );
  }

  // Stored messages by seq, then the agent's own not yet stored. Nodes are keyed and reused,
  // so a refresh keeps the scroll position and does not re-announce old messages.
  function renderTranscript() {
    var log = dom.transcript;
    var atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    var entries = [];
    Array.from(state.messages.values())
      .sort(function (a, b) {
        return a.seq - b.seq;
      })
      .forEach(function (message) {
        entries.push({ key: messageKey(message), signature: JSON.stringify(message) + (state.revealed[message.id] || ""), build: buildMessage.bind(null, message) });
      });
    var currentId = state.conversation && state.conversation.id;
    state.outbox.forEach(function (item) {
      if (item.conversation_id !== currentId) return;
      entries.push({ key: "p:" + item.client_id, signature: item.state + (item.error || ""), build: buildPending.bind(null, item) });
    });
    var wanted = new Set(
      entries.map(function (entry) {
        return entry.key;
      })
    );
    transcriptNodes.forEach(function (known, key) {
      if (!wanted.has(key)) {
        known.node.remove();
        transcriptNodes.delete(key);
      }
    });
    var previous = null;
    entries.forEach(function (entry) {
      var known = transcriptNodes.get(entry.key);
      if (!known || known.signature !== entry.signature) {
        var node = entry.build();
        if (known) known.node.replaceWith(node);
        known = { node: node, signature: entry.signature };
        transcriptNodes.set(entry.key, known);
      }
      var expected = previous ? previous.nextSibling : log.firstChild;
      if (known.node !== expected) log.insertBefore(known.node, expected);
      previous = known.node;
    });
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  function showCustomerTyping(on) {
    clearTimeout(customerTypingTimer);
    state.customerTyping = on;
    dom.typing.hidden = !on;
    dom.typing.textContent = on ? t("customerTyping") : "";
    if (on) customerTypingTimer = setTimeout(showCustomerTyping.bind(null, false), TYPING_SHOWN_MAX_MS);
  }

  // ---- the open conversation -------------------------------------------------------------

  function openConversation(id) {
    if (!id) return;
    if (id !== state.openId) {
      stopTyping();
      hideMacros();
      hideTransfer();
      state.openId = id;
      state.conversation = null;
      state.messages.clear();
      state.events = [];
      state.others = [];
      state.assist = { conversationId: null, asking: false, suggestions: null };
      dom.textarea.value = "";
      renderSuggestions();
      renderTranscript();
    }
    renderQueue();
    renderMine();
    act({ type: "open", conversation_id: id });
  }

  function closePane() {
    stopTyping();
    hideMacros();
    hideTransfer();
    state.openId = null;
    state.conversation = null;
    state.messages.clear();
    state.revealed = {};
    state.assist = { conversationId: null, asking: false, suggestions: null };
    showCustomerTyping(false);
    renderConversation();
    renderSuggestions();
    renderQueue();
    renderMine();
  }

  function canWork() {
    var c = state.conversation;
    return !!(c && c.status === "agent" && (c.agent_id === state.me.id || state.me.supervisor));
  }

  function renderConversation() {
    var c = state.conversation;
    dom.noConversation.hidden = !!c;
    dom.pane.hidden = !c;
    renderHeader();
    renderTranscript();
    renderContext();
    renderControls();
  }

  function renderHeader() {
    var c = state.conversation;
    if (!c) return;
    dom.heading.textContent = (c.intent || t("conversation", { id: String(c.id).slice(0, 8) }));
    var meta = [t("status_" + c.status)];
    if (c.agent_name) meta.push(t("withAgent", { value: c.agent_name }));
    if (c.language) meta.push(t("language", { value: c.language }));
    if (c.handoff_reason) meta.push(t("handoffReason", { value: reasonLabel(c) }));
    var customer = c.customer || {};
    if (customer.channel) meta.push(t("channel", { value: customer.channel }));
    if (customer.locale) meta.push(t("locale", { value: customer.locale }));
    if (c.resolution_code) meta.push(t("resolution", { value: resolutionLabel(c.resolution_code) }));
    if (typeof c.csat === "number") meta.push(t("csat", { value: c.csat }));
    else if (state.csatRequested) meta.push(t("csatRequested"));
    dom.meta.textContent = meta.join(" · ");
    dom.summary.textContent = c.summary || "";
    dom.summary.hidden = !c.summary;
  }

  // A hand-off reason in words: the server words it in the console's language (the code,
  // "low_confidence" or "intent:human_agent", stays in the data and in the badge's title).
  function reasonLabel(item) {
    return item.handoff_reason_label || item.handoff_reason;
  }

  function resolutionLabel(code) {
    var match = state.resolutions.find(function (r) {
      return r.code === code;
    });
    return match ? match.label : code;
  }

  function renderContext() {
    dom.eventsList.textContent = "";
    state.events.forEach(function (event) {
      var parts = [event.label || event.kind];
      if (event.actor) parts.push(t("by", { name: event.actor }));
      if (event.agent && event.agent !== event.actor) parts.push(t("to", { name: event.agent }));
      if (event.note) parts.push(t("eventNote", { note: event.note }));
      dom.eventsList.appendChild(
        el("li", null, [el("time", { datetime: event.created, text: formatTime(event.created) }), " ", parts.join(" ")])
      );
    });
    dom.eventsCount.textContent = state.events.length ? "(" + state.events.length + ")" : "";
    dom.othersList.textContent = "";
    state.others.forEach(function (other) {
      var label = [formatTime(other.created), t("status_" + other.status), other.intent || ""]
        .filter(Boolean)
        .join(" · ");
      var item = el("li", null, [label]);
      // Only what this agent may see opens: the server checks, and says not_found otherwise.
      if (state.me.supervisor || other.status === "waiting_agent") {
        var button = el("button", { type: "button", text: t("open") });
        button.addEventListener("click", openConversation.bind(null, other.id));
        item.appendChild(document.createTextNode(" "));
        item.appendChild(button);
      }
      dom.othersList.appendChild(item);
    });
    dom.othersCount.textContent = state.others.length ? "(" + state.others.length + ")" : "";
  }

  function renderControls() {
    var c = state.conversation;
    var working = canWork();
    var connected = isOpen();
    dom.claimBar.hidden = !(c && c.status === "waiting_agent");
    dom.claimOpen.disabled = !connected;
    dom.textarea.disabled = !working;
    dom.send.disabled = !working;
    dom.transferOpen.disabled = !working;
    dom.toBot.disabled = !working;
    var closable = !!c && c.status !== "closed" && (working || state.me.supervisor);
    dom.closeConversation.disabled = !closable;
    dom.resolution.disabled = !closable;
    dom.assist.disabled = !c || !connected || c.status === "closed";
    if (!working) {
      hideTransfer();
      hideMacros();
    }
  }

  function renderResolutions() {
    var selected = dom.resolution.value;
    dom.resolution.textContent = "";
    state.resolutions.forEach(function (resolution) {
      dom.resolution.appendChild(el("option", { value: resolution.code, text: resolution.label }));
    });
    if (selected) dom.resolution.value = selected;
  }

  // ---- queue and the agent's conversations -------------------------------------------------

  // Rebuilds only the items whose data changed, so a button the agent is on keeps focus.
  function syncList(list, items, key, signature, build) {
    var existing = new Map();
    Array.from(list.children).forEach(function (node) {
      existing.set(node.getAttribute("data-key"), node);
    });
    var previous = null;
    items.forEach(function (item) {
      var k = key(item);
      var sig = signature(item);
      var node = existing.get(k);
      if (!node || node.getAttribute("data-signature") !== sig) {
        var fresh = build(item);
        fresh.setAttribute("data-key", k);
        fresh.setAttribute("data-signature", sig);
        if (node) node.replaceWith(fresh);
        node = fresh;
      }
      existing.delete(k);
      var expected = previous ? previous.nextSibling : list.firstChild;
      if (node !== expected) list.insertBefore(node, expected);
      previous = node;
    });
    existing.forEach(function (node) {
      node.remove();
    });
  }

  function queueWaited(item) {
    return item.waited_seconds + (performance.now() - item.receivedAt) / 1000;
  }

  // The server's flag at receipt, raised by the clock as the customer keeps waiting.
  function queueSla(item) {
    var waited = queueWaited(item);
    var local = waited >= state.slaSeconds ? "breached" : waited >= state.slaSeconds * SLA_AT_RISK_SHARE ? "at_risk" : "ok";
    var server = SLA_ORDER[item.sla] !== undefined ? item.sla : "ok";
    return SLA_ORDER[local] > SLA_ORDER[server] ? local : server;
  }

  function buildQueueItem(item) {
    var headingId = "q-" + item.id;
    var negative = item.sentiment === "negative";
    var claim = el("button", { type: "button", class: "primary claim", text: t("claim"), "aria-describedby": headingId });
    claim.addEventListener("click", function () {
      state.lastClaimId = item.id;
      act({ type: "claim", conversation_id: item.id });
    });
    var view = el("button", { type: "button", class: "view", text: t("view"), "aria-describedby": headingId });
    view.addEventListener("click", openConversation.bind(null, item.id));
    return el("li", { class: "item queue-item", "data-id": item.id }, [
      el("div", { class: "row" }, [
        el("span", { class: "badge lang", text: item.language || "?" }),
        el("span", { class: "intent", id: headingId, text: item.intent || t("noIntent") }),
        negative ? el("span", { class: "badge mood-negative", title: t("negativeLabel"), text: t("negative") }) : null,
        el("span", { class: "timer", role: "timer" }),
      ]),
      item.handoff_reason ? el("div", { class: "row" }, [el("span", { class: "badge reason", title: item.handoff_reason, text: reasonLabel(item) })]) : null,
      item.summary ? el("div", { class: "line summary", title: item.summary, text: firstLine(item.summary) }) : null,
      item.last_message ? el("div", { class: "line last", title: item.last_message, text: "“" + firstLine(item.last_message) + "”" }) : null,
      el("span", { class: "sr-only sla-note" }),
      el("div", { class: "buttons" }, [claim, view]),
    ]);
  }

  function renderQueue() {
    syncList(
      dom.queueList,
      state.queue,
      function (item) {
        return item.id;
      },
      function (item) {
        var copy = Object.assign({}, item, { waited_seconds: 0, receivedAt: 0, sla: "" });
        return JSON.stringify(copy) + (item.id === state.openId ? "*" : "");
      },
      buildQueueItem
    );
    Array.from(dom.queueList.children).forEach(function (node) {
      node.classList.toggle("current", node.getAttribute("data-id") === state.openId);
    });
    dom.queueEmpty.hidden = state.queue.length > 0;
    dom.queueCount.textContent = state.queue.length ? "(" + state.queue.length + ")" : "";
    document.title = state.queue.length ? t("queueTitle", { n: state.queue.length, title: pageTitle }) : pageTitle;
    tick();
  }

  // Once a second: the waiting times, and the SLA flags they cross.
  function tick() {
    var byId = new Map(
      state.queue.map(function (item) {
        return [item.id, item];
      })
    );
    Array.from(dom.queueList.children).forEach(function (node) {
      var item = byId.get(node.getAttribute("data-id"));
      if (!item) return;
      var sla = queueSla(item);
      var timer = node.querySelector(".timer");
      timer.textContent = formatDuration(queueWaited(item));
      timer.setAttribute("aria-label", t("waited", { time: timer.textContent }));
      ["ok", "at_risk", "breached"].forEach(function (level) {
        node.classList.toggle("sla-" + level, level === sla);
      });
      node.setAttribute("data-sla", sla);
      var note = sla === "breached" ? t("slaBreached") : sla === "at_risk" ? t("slaAtRisk") : "";
      var noteNode = node.querySelector(".sla-note");
      if (noteNode.textContent !== note) noteNode.textContent = note;
    });
  }

  function buildMineItem(item) {
    var headingId = "m-" + item.id;
    var open = el("button", { type: "button", class: "open", text: t("open"), "aria-describedby": headingId });
    open.addEventListener("click", openConversation.bind(null, item.id));
    var showAgent = state.me.supervisor && item.agent_name;
    return el("li", { class: "item mine-item", "data-id": item.id }, [
      el("div", { class: "row" }, [
        el("span", { class: "badge lang", text: item.language || "?" }),
        el("span", { class: "intent", id: headingId, text: item.intent || t("noIntent") }),
        item.first_agent_reply_at ? null : el("span", { class: "badge reason", text: t("noReplyYet") }),
      ]),
      showAgent ? el("div", { class: "line agent-name", text: t("withAgent", { value: item.agent_name }) }) : null,
      item.last_message ? el("div", { class: "line last", title: item.last_message, text: "“" + firstLine(item.last_message) + "”" }) : null,
      el("div", { class: "buttons" }, [open]),
    ]);
  }

  function renderMine() {
    syncList(
      dom.mineList,
      state.mine,
      function (item) {
        return item.id;
      },
      function (item) {
        return JSON.stringify(item) + String(state.me.supervisor);
      },
      buildMineItem
    );
    Array.from(dom.mineList.children).forEach(function (node) {
      node.classList.toggle("current", node.getAttribute("data-id") === state.openId);
    });
    dom.mineEmpty.hidden = state.mine.length > 0;
    dom.mineCount.textContent = state.mine.length ? "(" + state.mine.length + ")" : "";
  }

  // ---- supervisors: agents' load and transfer targets --------------------------------------

  function renderAgents() {
    if (!dom.agentsBody) return;
    dom.agentsBody.textContent = "";
    state.agents.forEach(function (agent) {
      var full = agent.open >= agent.capacity;
      dom.agentsBody.appendChild(
        el("tr", { "data-id": String(agent.id) }, [
          el("td", { text: agent.name }),
          el("td", { class: "presence-" + agent.presence, text: t("presence_" + agent.presence) }),
          el("td", { class: full ? "full" : null, text: agent.open + " / " + agent.capacity }),
          el("td", { text: (agent.languages || []).length ? agent.languages.join(", ") : t("allLanguages") }),
          el("td", { text: agent.last_seen ? formatTime(agent.last_seen) : t("never") }),
        ])
      );
    });
  }

  function renderTransferTargets() {
    var select = dom.transferTo;
    var selected = select.value;
    while (select.options.length > 1) select.remove(1); // the first is "back to the queue"
    if (!state.me.supervisor) return;
    var holder = state.conversation && state.conversation.agent_id;
    state.agents.forEach(function (agent) {
      if (agent.id === holder) return;
      var available = agent.presence === "online" && agent.open < agent.capacity;
      select.appendChild(
        el("option", {
          value: String(agent.id),
          disabled: !available,
          text: t("agentOption", {
            name: agent.name,
            open: agent.open,
            capacity: agent.capacity,
            presence: t("presence_" + agent.presence),
          }),
        })
      );
    });
    select.value = selected;
    if (select.selectedIndex < 0) select.selectedIndex = 0;
  }

  function showTransfer() {
    renderTransferTargets();
    dom.transferForm.hidden = false;
    dom.transferOpen.setAttribute("aria-expanded", "true");
    dom.transferTo.focus();
  }

  function hideTransfer() {
    dom.transferForm.hidden = true;
    dom.transferOpen.setAttribute("aria-expanded", "false");
  }

  // ---- suggestions -----------------------------------------------------------------------

  function requestAssist() {
    if (!state.openId) return;
    state.assist = { conversationId: state.openId, asking: true, suggestions: null };
    renderSuggestions();
    if (!sendFrame({ type: "assist", conversation_id: state.openId })) {
      state.assist.asking = false;
      renderSuggestions();
    }
  }

  function renderSuggestions() {
    var list = dom.suggestions;
    list.textContent = "";
    var assist = state.assist;
    if (!state.openId || assist.conversationId !== state.openId) return;
    if (assist.asking) {
      list.appendChild(el("li", { class: "note", text: t("assistAsking") }));
      return;
    }
    if (!assist.suggestions) return;
    if (!assist.suggestions.length) {
      list.appendChild(el("li", { class: "note", text: t("assistNone") }));
      return;
    }
    assist.suggestions.forEach(function (suggestion, index) {
      var insert = el("button", {
        type: "button",
        text: t("insert"),
        "aria-label": t("insertLabel", { n: index + 1 }),
      });
      insert.addEventListener("click", function () {
        insertText(suggestion.text || "");
      });
      var links = sourceLinks(suggestion.sources);
      list.appendChild(
        el("li", { class: "suggestion", "data-kind": suggestion.kind || "" }, [
          el("span", { class: "badge", text: T["kind_" + suggestion.kind] ? t("kind_" + suggestion.kind) : suggestion.kind || "" }),
          el("div", { class: "text", text: suggestion.text || "" }),
          links.length ? el("div", { class: "sources" }, links) : null,
          insert,
        ])
      );
    });
  }

  // For editing before it is sent: suggestions and canned replies are drafts, never sent as is.
  function insertText(text) {
    if (dom.textarea.disabled) {
      showToast(t("notYours"), true);
      return;
    }
    dom.textarea.value = text;
    hideMacros();
    dom.textarea.focus();
    dom.textarea.setSelectionRange(text.length, text.length);
  }

  // ---- canned replies ("/" in the composer) -------------------------------------------------

  function macroQuery() {
    var match = /^\/([^\s/]*)$/.exec(dom.textarea.value);
    return match ? match[1] : null;
  }

  function requestMacros() {
    clearTimeout(macroTimer);
    var query = macroQuery();
    if (query === null || !state.openId) {
      hideMacros();
      return;
    }
    macroTimer = setTimeout(function () {
      state.macros.query = query;
      sendFrame({ type: "macros", conversation_id: state.openId, query: query });
    }, MACRO_DEBOUNCE_MS);
  }

  function macrosShown() {
    return !dom.macroList.hidden && state.macros.items.length > 0;
  }

  function renderMacros() {
    var list = dom.macroList;
    list.textContent = "";
    var items = state.macros.items;
    if (!items.length) {
      list.appendChild(el("li", { class: "note", role: "option", "aria-disabled": "true", text: t("macrosNone") }));
    }
    items.forEach(function (item, index) {
      var option = el(
        "li",
        {
          id: "macro-" + index,
          role: "option",
          "aria-selected": String(index === state.macros.index),
        },
        [
          el("span", { class: "shortcut", text: "/" + item.shortcut }),
          el("span", { class: "title", text: item.title }),
          el("span", { class: "preview", text: firstLine(item.text) }),
        ]
      );
      // mousedown, not click: the textarea keeps focus.
      option.addEventListener("mousedown", function (event) {
        event.preventDefault();
        pickMacro(index);
      });
      list.appendChild(option);
    });
    list.hidden = false;
    dom.textarea.setAttribute("aria-expanded", "true");
    if (state.macros.index >= 0) dom.textarea.setAttribute("aria-activedescendant", "macro-" + state.macros.index);
    else dom.textarea.removeAttribute("aria-activedescendant");
  }

  function hideMacros() {
    clearTimeout(macroTimer);
    state.macros = { items: [], index: -1, query: null };
    dom.macroList.hidden = true;
    dom.macroList.textContent = "";
    dom.textarea.setAttribute("aria-expanded", "false");
    dom.textarea.removeAttribute("aria-activedescendant");
  }

  function moveMacro(step) {
    var n = state.macros.items.length;
    if (!n) return;
    state.macros.index = (state.macros.index + step + n) % n;
    renderMacros();
  }

  function pickMacro(index) {
    var item = state.macros.items[index];
    if (!item) return;
    var query = macroQuery();
    var rest = query === null ? "" : dom.textarea.value.slice(query.length + 1);
    insertText(item.text + rest);
  }

  // ---- composing and sending ---------------------------------------------------------------

  function stopTyping() {
    clearTimeout(typingTimer);
    if (typingSent && state.openId) sendFrame({ type: "typing", conversation_id: state.openId, on: false });
    typingSent = false;
  }

  function noteTyping() {
    if (!canWork()) return;
    var text = dom.textarea.value.trim();
    if (!text || macroQuery() !== null) {
      stopTyping();
      return;
    }
    if (!typingSent && sendFrame({ type: "typing", conversation_id: state.openId, on: true })) typingSent = true;
    clearTimeout(typingTimer);
    typingTimer = setTimeout(stopTyping, TYPING_IDLE_MS);
  }

  function submit() {
    var text = dom.textarea.value.trim();
    if (!canWork()) {
      showToast(t("notYours"), true);
      return;
    }
    if (!text) {
      showToast(t("empty"), true);
      return;
    }
    var n = charCount(text);
    if (n > MAX_CHARS) {
      showToast(t("tooLong", { n: n, max: MAX_CHARS }), true);
      return;
    }
    stopTyping();
    var item = { client_id: uuid(), conversation_id: state.openId, text: text, state: "queued" };
    state.outbox.push(item);
    if (sendFrame({ type: "message", conversation_id: item.conversation_id, text: text, client_id: item.client_id })) {
      item.state = "sending";
    }
    dom.textarea.value = "";
    renderTranscript();
    dom.transcript.scrollTop = dom.transcript.scrollHeight;
    dom.textarea.focus();
  }

  function flushOutbox() {
    state.outbox.forEach(function (item) {
      if (item.state !== "queued") return;
      var frame = { type: "message", conversation_id: item.conversation_id, text: item.text, client_id: item.client_id };
      if (sendFrame(frame)) item.state = "sending";
    });
    renderTranscript();
  }

  // ---- toasts ------------------------------------------------------------------------------

  function showToast(text, isError) {
    var toast = el("div", { class: "toast" + (isError ? " error" : ""), role: isError ? "alert" : null, text: text });
    dom.toasts.appendChild(toast);
    while (dom.toasts.children.length > 4) dom.toasts.firstChild.remove();
    setTimeout(function () {
      toast.remove();
    }, TOAST_MS);
  }

  // ---- wiring ------------------------------------------------------------------------------

  dom.presence.addEventListener("change", function () {
    act({ type: "presence", presence: dom.presence.value });
  });
  dom.claimOpen.addEventListener("click", function () {
    if (!state.openId) return;
    state.lastClaimId = state.openId;
    act({ type: "claim", conversation_id: state.openId });
  });
  dom.composer.addEventListener("submit", function (event) {
    event.preventDefault();
    submit();
  });
  dom.textarea.addEventListener("keydown", function (event) {
    if (macrosShown()) {
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        event.preventDefault();
        moveMacro(event.key === "ArrowDown" ? 1 : -1);
        return;
      }
      if ((event.key === "Enter" && !event.shiftKey) || event.key === "Tab") {
        event.preventDefault();
        pickMacro(state.macros.index);
        return;
      }
    }
    // "/" and letters are a search for a canned reply: Enter picks one, it does not send the
    // query to the customer (the Send button still can).
    if (event.key === "Enter" && !event.shiftKey && macroQuery() !== null) {
      event.preventDefault();
      return;
    }
    if (event.key === "Escape" && !dom.macroList.hidden) {
      event.preventDefault();
      hideMacros();
      return;
    }
    // Enter sends, Shift+Enter is a new line; an IME composing Chinese uses Enter to commit.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
      event.preventDefault();
      submit();
    }
  });
  dom.textarea.addEventListener("input", function () {
    requestMacros();
    noteTyping();
  });
  dom.textarea.addEventListener("blur", function () {
    hideMacros();
    stopTyping();
  });
  dom.transferOpen.addEventListener("click", function () {
    if (dom.transferForm.hidden) showTransfer();
    else hideTransfer();
  });
  dom.transferCancel.addEventListener("click", function () {
    hideTransfer();
    dom.transferOpen.focus();
  });
  dom.transferForm.addEventListener("submit", function (event) {
    event.preventDefault();
    if (!state.openId) return;
    var target = dom.transferTo.value;
    act({
      type: "transfer",
      conversation_id: state.openId,
      to_agent: target ? Number(target) : null,
      note: dom.transferNote.value.trim(),
    });
  });
  dom.toBot.addEventListener("click", function () {
    if (state.openId) act({ type: "to_bot", conversation_id: state.openId });
  });
  dom.closeConversation.addEventListener("click", function () {
    if (!state.openId || !dom.resolution.value) return;
    act({ type: "close", conversation_id: state.openId, resolution: dom.resolution.value });
  });
  dom.assist.addEventListener("click", requestAssist);
  window.addEventListener("online", reconnectNow);
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") reconnectNow();
  });

  setInterval(tick, 1000);
  renderConversation();
  renderSuggestions();
  renderQueue();
  renderMine();
  connect();

  // One console per page; what it holds can be inspected from the browser's devtools.
  window.csConsole = { state: state };
})();
