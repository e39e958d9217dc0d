/*
 * Customer-support chat widget. One tag on any site:
 *
 *   <script src="https://support.example.com/static/widget.js" data-kb="1" async></script>
 *
 * Optional: data-lang="zh-hans|en" (else the page's <html lang>, else the browser's language),
 * data-title (the panel's heading), data-server (origin of the support platform; default: the
 * origin this script was loaded from).
 *
 * Plain JavaScript, no build step. It speaks the websocket protocol of docs/chat-protocol.md.
 * Everything lives in a Shadow DOM, so the host page's CSS and ours cannot touch each other.
 * Page scripts may call window.csWidget.open(text?) and window.csWidget.close().
 */
(function () {
  "use strict";

  var MAX_CHARS = 4000; // the server's limit for one message (code points)
  var COUNTER_FROM = 3500; // show the character counter from here on
  var BACKOFF_MS = [1000, 2000, 4000, 8000, 15000, 30000];
  var STABLE_MS = 10000; // a socket open this long resets the backoff
  var RATE_LIMIT_RETRY_MS = 5000;
  var TYPING_IDLE_MS = 3000;
  var TYPING_SHOWN_MAX_MS = 30000; // hide the other side's indicator if its "off" never comes
  var TOAST_MS = 6000;

  // Every string the widget shows, in both languages.
  var STRINGS = {
    en: {
      title: "Customer support",
      open: "Open chat",
      close: "Close chat",
      conversation: "Conversation",
      input: "Your message",
      placeholder: "Type your question…",
      send: "Send",
      handoff: "Talk to a human",
      welcome: "Hi! Ask us anything, in English or Chinese.",
      you: "You",
      bot: "Assistant",
      agent: "Agent",
      sources: "Sources:",
      helpful: "Helpful",
      notHelpful: "Not helpful",
      typingBot: "The assistant is typing…",
      typingAgent: "The agent is typing…",
      connecting: "Connecting…",
      reconnecting: "Connection lost. Reconnecting…",
      refused: "The chat cannot be used on this site.",
      queued: "Will be sent when the connection is back",
      sending: "Sending…",
      notSent: "Not sent",
      counter: "{n} / {max}",
      tooLongLocal: "A message can be at most {max} characters. This one has {n}.",
      unread: "new messages: {n}",
      status_waiting_agent: "Waiting for an agent…",
      status_agent: "An agent has joined the conversation.",
      status_closed: "This conversation has ended. Send a message to start a new one.",
      csatPrompt: "How would you rate the help you got?",
      csatRate: "Rate {n} of 5",
      csatThanks: "Thank you for your rating.",
      status_bot: "You are back with the assistant.",
      error_too_long: "That message is too long.",
      error_empty: "The message is empty.",
      error_rate_limited: "You are sending messages too quickly. Please wait a moment.",
      error_bad_token: "Your previous conversation could not be found; starting a new one.",
      error_not_found: "This chat is not available.",
      error_no_conversation: "Send a message first, then ask for a human.",
      error_unavailable: "The service is busy right now. Please try again shortly.",
      error_offline: "You are offline. Please try again when the connection is back.",
      error_generic: "Something went wrong. Please try again.",
    },
    "zh-hans": {
      title: "在线客服",
      open: "打开客服对话",
      close: "关闭对话",
      conversation: "对话记录",
      input: "输入消息",
      placeholder: "请输入您的问题…",
      send: "发送",
      handoff: "转人工",
      welcome: "您好！有什么可以帮您？中英文提问都可以。",
      you: "我",
      bot: "智能助手",
      agent: "人工客服",
      sources: "参考文章：",
      helpful: "有帮助",
      notHelpful: "没帮助",
      typingBot: "智能助手正在输入…",
      typingAgent: "客服正在输入…",
      connecting: "正在连接…",
      reconnecting: "连接已断开，正在重新连接…",
      refused: "本网站无法使用在线客服。",
      queued: "连接恢复后自动发送",
      sending: "发送中…",
      notSent: "未发送",
      counter: "{n} / {max}",
      tooLongLocal: "每条消息最多 {max} 个字符，当前 {n} 个。",
      unread: "{n} 条新消息",
      status_waiting_agent: "正在为您转接人工客服，请稍候…",
      status_agent: "人工客服已接入。",
      status_closed: "本次对话已结束。发送消息即可开始新的对话。",
      csatPrompt: "请为本次服务打分：",
      csatRate: "评分 {n} 分（满分 5 分）",
      csatThanks: "感谢您的评价。",
      status_bot: "已回到智能助手。",
      error_too_long: "消息太长了。",
      error_empty: "消息不能为空。",
      error_rate_limited: "发送太频繁了，请稍后再试。",
      error_bad_token: "找不到之前的对话，已为您开始新的对话。",
      error_not_found: "该客服对话不可用。",
      error_no_conversation: "请先发送一条消息，再转人工。",
      error_unavailable: "服务繁忙，请稍后再试。",
      error_offline: "网络已断开，请恢复连接后再试。",
      error_generic: "出错了，请重试。",
    },
  };

  var ICONS = {
    chat:
      '<svg viewBox="0 0 24 24" aria-hidden="true" focusable="false"><path d="M20 2H4a2 2 0 0 0-2 2v18l4-4h14a2 2 0 0 0 2-2V4a2 2 0 0 0-2-2z"/></svg>',
    send: '<svg viewBox="0 0 24 24" aria-hidden="true" focusable="false"><path d="M2.01 21 23 12 2.01 3 2 10l15 2-15 2z"/></svg>',
    close:
      '<svg viewBox="0 0 24 24" aria-hidden="true" focusable="false"><path d="M19 6.41 17.59 5 12 10.59 6.41 5 5 6.41 10.59 12 5 17.59 6.41 19 12 13.41 17.59 19 19 17.59 13.41 12z"/></svg>',
    thumb:
      '<svg viewBox="0 0 24 24" aria-hidden="true" focusable="false"><path d="M1 21h4V9H1v12zm22-11a2 2 0 0 0-2-2h-6.31l.95-4.57.03-.32c0-.41-.17-.79-.44-1.06L14.17 1 7.59 7.59C7.22 7.95 7 8.45 7 9v10a2 2 0 0 0 2 2h9c.83 0 1.54-.5 1.84-1.22l3.02-7.05c.09-.23.14-.47.14-.73v-2z"/></svg>',
  };

  var CSS = [
    ":host { all: initial; }",
    "* { box-sizing: border-box; }",
    ".root { font: 15px/1.5 system-ui, -apple-system, 'Segoe UI', 'PingFang SC', 'Noto Sans CJK SC', 'Microsoft YaHei', sans-serif; color: #1f2933; }",
    "svg { width: 20px; height: 20px; fill: currentColor; display: block; }",
    "button { font: inherit; cursor: pointer; }",
    "button:focus-visible, textarea:focus-visible, a:focus-visible { outline: 2px solid #f59e0b; outline-offset: 2px; }",
    ".launcher { position: fixed; right: 20px; bottom: 20px; z-index: 2147483000; width: 56px; height: 56px; border-radius: 50%; border: 0; background: #0b6bcb; color: #fff; box-shadow: 0 4px 16px rgba(0,0,0,.25); display: flex; align-items: center; justify-content: center; }",
    ".launcher svg { width: 26px; height: 26px; }",
    ".badge { position: absolute; top: -2px; right: -2px; min-width: 20px; height: 20px; padding: 0 5px; border-radius: 10px; background: #d92d20; color: #fff; font-size: 12px; line-height: 20px; text-align: center; }",
    ".panel { position: fixed; right: 20px; bottom: 88px; z-index: 2147483000; width: 380px; height: 600px; max-height: calc(100vh - 108px); display: flex; flex-direction: column; background: #fff; border-radius: 14px; box-shadow: 0 12px 40px rgba(0,0,0,.25); overflow: hidden; }",
    ".panel[hidden], [hidden] { display: none !important; }",
    "header { display: flex; align-items: center; gap: 8px; padding: 10px 10px 10px 16px; background: #0b6bcb; color: #fff; }",
    "header h2 { flex: 1; margin: 0; font-size: 16px; font-weight: 600; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }",
    ".handoff { border: 1px solid rgba(255,255,255,.7); background: transparent; color: #fff; border-radius: 999px; padding: 3px 10px; font-size: 13px; white-space: nowrap; }",
    ".close { border: 0; background: transparent; color: #fff; padding: 6px; border-radius: 6px; }",
    ".conn, .status { padding: 6px 14px; font-size: 13px; }",
    ".conn { background: #fff4e5; color: #8a5300; }",
    ".status { background: #eef4ff; color: #1d4ed8; }",
    ".log { flex: 1; overflow-y: auto; padding: 14px; display: flex; flex-direction: column; gap: 10px; background: #f7f8fa; overscroll-behavior: contain; }",
    ".msg { max-width: 85%; display: flex; flex-direction: column; align-items: flex-start; }",
    ".msg .who { font-size: 12px; color: #616e7c; margin: 0 0 2px 4px; }",
    ".bubble { padding: 8px 12px; border-radius: 14px; background: #fff; border: 1px solid #e4e7eb; white-space: pre-wrap; overflow-wrap: anywhere; }",
    ".msg.customer { align-self: flex-end; align-items: flex-end; }",
    ".msg.customer .bubble { background: #0b6bcb; color: #fff; border-color: #0b6bcb; }",
    ".msg.agent .bubble { background: #ecfdf3; border-color: #abefc6; }",
    ".msg.system { align-self: center; max-width: 95%; }",
    ".msg.system .bubble { background: transparent; border: 0; color: #616e7c; font-size: 13px; text-align: center; padding: 2px 8px; }",
    ".msg.welcome .bubble { color: #3e4c59; }",
    ".state { font-size: 12px; color: #616e7c; margin: 2px 4px 0; }",
    ".msg.failed .state { color: #d92d20; }",
    ".sources { font-size: 13px; margin: 4px 4px 0; display: flex; flex-wrap: wrap; gap: 4px 8px; color: #616e7c; }",
    ".sources a { color: #0b6bcb; }",
    ".csat { padding: 8px 16px; border-top: 1px solid #e4e7eb; font-size: 14px; }",
    ".csat p { margin: 0 0 6px; }",
    ".csat-scale { display: flex; gap: 6px; }",
    ".csat-scale button { min-width: 36px; min-height: 36px; border: 1px solid #cbd2d9; border-radius: 6px; background: #fff; cursor: pointer; }",
    "a.cite { color: #0b6bcb; text-decoration: none; font-size: 11px; }",
    ".msg.draft .bubble::after { content: '\\258D'; margin-left: 2px; color: #9aa5b1; }",
    ".rate { display: flex; gap: 4px; margin: 4px 2px 0; }",
    ".rate button { border: 1px solid #e4e7eb; background: #fff; color: #7b8794; border-radius: 6px; padding: 3px 6px; }",
    ".rate svg { width: 16px; height: 16px; }",
    ".rate button.down svg { transform: rotate(180deg); }",
    ".rate button[aria-pressed='true'] { color: #fff; background: #0b6bcb; border-color: #0b6bcb; }",
    ".rate button.down[aria-pressed='true'] { background: #7b8794; border-color: #7b8794; }",
    ".choices { display: flex; flex-wrap: wrap; gap: 6px; margin-top: 6px; }",
    ".choices button { border: 1px solid #0b6bcb; color: #0b6bcb; background: #fff; border-radius: 999px; padding: 3px 12px; font-size: 14px; }",
    ".typing { padding: 0 16px 6px; font-size: 13px; color: #616e7c; background: #f7f8fa; }",
    ".toast { margin: 0 12px 8px; padding: 6px 10px; border-radius: 8px; background: #fef3f2; color: #b42318; font-size: 13px; }",
    "form { display: flex; align-items: flex-end; gap: 8px; padding: 10px; border-top: 1px solid #e4e7eb; background: #fff; position: relative; }",
    "textarea { flex: 1; resize: none; font: inherit; border: 1px solid #cbd2d9; border-radius: 10px; padding: 8px 10px; min-height: 40px; max-height: 120px; color: inherit; background: #fff; }",
    "textarea[aria-invalid='true'] { border-color: #d92d20; }",
    ".send { border: 0; background: #0b6bcb; color: #fff; border-radius: 10px; width: 42px; height: 40px; display: flex; align-items: center; justify-content: center; }",
    ".send:disabled { background: #9aa5b1; cursor: default; }",
    ".counter { position: absolute; right: 62px; top: -20px; font-size: 12px; color: #616e7c; background: rgba(255,255,255,.9); padding: 0 4px; border-radius: 4px; }",
    ".counter.over { color: #d92d20; }",
    ".sr-only { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }",
    // Phones: the panel takes the whole screen and the launcher hides behind it.
    "@media (max-width: 480px) {",
    "  .panel { inset: 0; width: 100%; height: 100%; max-height: none; border-radius: 0; }",
    "  .open .launcher { display: none; }",
    "  textarea { font-size: 16px; }", // 16px keeps iOS from zooming into the field
    "}",
  ].join("\n");

  // ---- configuration from the script tag -------------------------------------------------

  var script = document.currentScript || document.querySelector("script[src*='widget.js'][data-kb]");
  if (!script || window.csWidget) return; // one widget per page
  var kb = script.getAttribute("data-kb");
  if (!kb) {
    console.error("widget.js: the data-kb attribute (knowledge base id) is required");
    return;
  }
  var server = (script.getAttribute("data-server") || new URL(script.src, location.href).origin).replace(
    /\/+$/,
    ""
  );
  var lang = pickLanguage([
    script.getAttribute("data-lang"),
    document.documentElement.getAttribute("lang"),
    navigator.language,
  ]);
  var T = STRINGS[lang];
  var title = script.getAttribute("data-title") || T.title;
  var storageKey = "csWidget:" + server + ":" + kb;

  function pickLanguage(candidates) {
    for (var i = 0; i < candidates.length; i++) {
      var value = (candidates[i] || "").trim().toLowerCase();
      if (value) return value.indexOf("zh") === 0 ? "zh-hans" : "en";
    }
    return "en";
  }

  function t(key, values) {
    var text = T[key] || STRINGS.en[key] || key;
    return text.replace(/\{(\w+)\}/g, function (_, name) {
      var value = values && values[name];
      return typeof value === "number" ? value.toLocaleString(lang) : String(value);
    });
  }

  // localStorage can be blocked (privacy modes, sandboxed frames): then the token lives as long
  // as the page does.
  var memoryStore = {};
  function storeGet(key) {
    try {
      return window.localStorage.getItem(key);
    } catch (e) {
      return memoryStore[key] || null;
    }
  }
  function storeSet(key, value) {
    try {
      if (value === null) window.localStorage.removeItem(key);
      else window.localStorage.setItem(key, value);
    } catch (e) {
      if (value === null) delete memoryStore[key];
      else memoryStore[key] = value;
    }
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

  function charCount(text) {
    return Array.from(text).length; // code points, as the server counts
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (name) {
        var value = attrs[name];
        if (value === null || value === undefined || value === false) return;
        if (name === "text") node.textContent = value;
        else if (name === "html") node.innerHTML = value; // only for our own constant icons
        else node.setAttribute(name, value === true ? "" : value);
      });
    }
    (children || []).forEach(function (child) {
      if (child) node.appendChild(child);
    });
    return node;
  }

  // ---- state ---------------------------------------------------------------------------

  var state = {
    open: false,
    conversationId: null,
    status: null,
    lastSeq: 0, // highest seq seen; sent in hello so a resumed socket replays only what we miss
    readSeq: null, // messages up to here have been seen (shown, or there before this page)
    messages: new Map(), // id -> message object from the server
    outbox: [], // customer messages not yet acknowledged: {client_id, text, state, error}
    drafts: new Map(), // stream_id -> text of an answer still being generated
    doneStreams: new Set(), // stream ids whose stored message (or withdrawal) has arrived
  };
  var socket = null;
  var socketOpenedAt = 0;
  var attempts = 0;
  var retryTimer = null;
  var refused = false;
  var resuming = false; // a hello with a token is out and its session has not come back yet
  var typingSent = false;
  var typingTimer = null;
  var otherTypingTimer = null;
  var toastTimer = null;
  var flushTimer = null;

  // ---- DOM -----------------------------------------------------------------------------

  var host = el("div", { id: "cs-widget-host" });
  var shadow = host.attachShadow({ mode: "open" });
  var badge = el("span", { class: "badge", hidden: true, "aria-hidden": "true" });
  var launcher = el("button", {
    type: "button",
    class: "launcher",
    "aria-label": t("open"),
    "aria-expanded": "false",
    "aria-controls": "cs-panel",
    html: ICONS.chat,
  });
  launcher.appendChild(badge);
  var handoffButton = el("button", { type: "button", class: "handoff", text: t("handoff") });
  var closeButton = el("button", {
    type: "button",
    class: "close",
    "aria-label": t("close"),
    html: ICONS.close,
  });
  var connLine = el("div", { class: "conn", role: "status", hidden: true });
  var statusLine = el("div", { class: "status", role: "status", hidden: true });
  // Asked when an agent closes the conversation: five buttons, one rating, then thanks.
  var csatBox = el("div", { class: "csat", role: "group", hidden: true });
  var log = el("div", {
    class: "log",
    role: "log",
    "aria-live": "polite",
    "aria-label": t("conversation"),
    tabindex: "0",
  });
  var typingLine = el("div", { class: "typing", "aria-live": "polite", hidden: true });
  var toast = el("div", { class: "toast", role: "alert", hidden: true });
  var textarea = el("textarea", { rows: "1", "aria-label": t("input"), placeholder: t("placeholder") });
  var counter = el("div", { class: "counter", "aria-live": "polite", hidden: true });
  var sendButton = el("button", { type: "submit", class: "send", "aria-label": t("send"), html: ICONS.send });
  var form = el("form", { novalidate: true }, [textarea, sendButton, counter]);
  var headingId = "cs-title";
  var panel = el(
    "section",
    {
      class: "panel",
      id: "cs-panel",
      role: "dialog",
      "aria-labelledby": headingId,
      hidden: true,
      lang: lang === "zh-hans" ? "zh-Hans" : "en",
    },
    [
      el("header", null, [el("h2", { id: headingId, text: title }), handoffButton, closeButton]),
      connLine,
      statusLine,
      log,
      csatBox,
      typingLine,
      toast,
      form,
    ]
  );
  var root = el("div", { class: "root" }, [el("style", { text: CSS }), panel, launcher]);
  shadow.appendChild(root);
  var welcome = el("div", { class: "msg system welcome" }, [
    el("div", { class: "bubble", text: t("welcome") }),
  ]);
  var nodes = new Map(); // render key -> element in the log

  // ---- rendering -----------------------------------------------------------------------

  // Bot answers are plain text with light Markdown (**bold**, [label](url)); built from text
  // nodes, never innerHTML, so nothing a message says can run in the page.
  // Bold, Markdown links and, in generated answers, citations "[n]" linking to source n.
  function renderText(container, text, sources) {
    var pattern = /\*\*([^*]+)\*\*|\[([^\]]+)\]\(([^)\s]+)\)|\[(\d{1,2})\]/g;
    var last = 0;
    var match;
    while ((match = pattern.exec(text))) {
      if (match.index > last) container.appendChild(document.createTextNode(text.slice(last, match.index)));
      if (match[1] !== undefined) {
        container.appendChild(el("strong", { text: match[1] }));
      } else if (match[4] !== undefined) {
        var source = (sources || [])[Number(match[4]) - 1];
        var url = source && safeUrl(source.url);
        container.appendChild(
          url
            ? el("sup", {}, [
                el("a", {
                  class: "cite",
                  href: url,
                  target: "_blank",
                  rel: "noopener",
                  title: source.title || "",
                  text: "[" + match[4] + "]",
                }),
              ])
            : document.createTextNode(match[0])
        );
      } else {
        var href = safeUrl(match[3]);
        container.appendChild(
          href
            ? el("a", { href: href, target: "_blank", rel: "noopener", text: match[2] })
            : document.createTextNode(match[2])
        );
      }
      last = pattern.lastIndex;
    }
    if (last < text.length) container.appendChild(document.createTextNode(text.slice(last)));
  }


  function safeUrl(url) {
    try {
      var parsed = new URL(url, server + "/");
      return parsed.protocol === "https:" || parsed.protocol === "http:" ? parsed.href : null;
    } catch (e) {
      return null;
    }
  }

  function roleLabel(role) {
    return role === "bot" ? t("bot") : role === "agent" ? t("agent") : role === "customer" ? t("you") : "";
  }

  function buildMessage(message) {
    var role = message.role || "system";
    var node = el("div", {
      class: "msg " + role,
      "data-id": message.id,
      "data-seq": String(message.seq),
      "data-role": role,
    });
    if (role === "bot" || role === "agent") {
      node.appendChild(el("div", { class: "who", text: roleLabel(role) }));
    } else if (role === "customer") {
      node.appendChild(el("span", { class: "sr-only", text: roleLabel(role) + ":" }));
    }
    var bubble = el("div", { class: "bubble" });
    if (message.created) {
      var created = new Date(message.created);
      if (!isNaN(created)) bubble.title = created.toLocaleString(lang);
    }
    if (role === "customer") bubble.textContent = message.text;
    else renderText(bubble, message.text || "", message.sources);
    node.appendChild(bubble);
    // Only answers show their sources (the server also records, on the customer's message,
    // what was found for it).
    var sources = (role === "customer" ? [] : message.sources || []).filter(function (source) {
      return source && source.url && safeUrl(source.url);
    });
    if (sources.length) {
      var list = el("div", { class: "sources" }, [el("span", { text: t("sources") })]);
      sources.forEach(function (source) {
        list.appendChild(
          el("a", {
            href: safeUrl(source.url),
            target: "_blank",
            rel: "noopener",
            text: source.title || source.url,
          })
        );
      });
      node.appendChild(list);
    }
    if (message.rateable) {
      var up = thumbButton("up", t("helpful"));
      var down = thumbButton("down", t("notHelpful"));
      [up, down].forEach(function (button) {
        button.addEventListener("click", function () {
          rate(message.id, button.getAttribute("data-value"));
        });
      });
      node.appendChild(el("div", { class: "rate" }, [up, down]));
      showRating(node, message.rating);
    }
    return node;
  }

  function thumbButton(value, label) {
    return el("button", {
      type: "button",
      class: value,
      "data-value": value,
      "aria-label": label,
      title: label,
      html: ICONS.thumb,
    });
  }

  function showRating(node, rating) {
    node.querySelectorAll(".rate button").forEach(function (button) {
      button.setAttribute("aria-pressed", String(button.getAttribute("data-value") === rating));
    });
  }

  // An answer being generated: shown as it grows, replaced by the stored message.
  function buildDraft(text) {
    var node = el("div", { class: "msg bot draft", "data-role": "bot", "aria-busy": "true" }, [
      el("div", { class: "who", text: roleLabel("bot") }),
      el("div", { class: "bubble" }),
    ]);
    updateDraft(node, text);
    return node;
  }

  function updateDraft(node, text) {
    var bubble = node.querySelector(".bubble");
    if (bubble.getAttribute("data-length") === String(text.length)) return;
    bubble.textContent = "";
    renderText(bubble, text);
    bubble.setAttribute("data-length", String(text.length));
  }

  function buildPending(item) {
    var note =
      item.state === "failed"
        ? t("notSent") + (item.error ? " · " + item.error : "")
        : item.state === "queued"
          ? t("queued")
          : t("sending");
    var attrs = {
      class: "msg customer pending" + (item.state === "failed" ? " failed" : ""),
      "data-client-id": item.client_id,
      "data-role": "customer",
    };
    return el("div", attrs, [
      el("span", { class: "sr-only", text: t("you") + ":" }),
      el("div", { class: "bubble", text: item.text }),
      el("div", { class: "state", text: note }),
    ]);
  }

  function pendingKey(item) {
    return "p:" + item.client_id + ":" + item.state;
  }

  // The log shows stored messages by seq, then our own not-yet-stored ones in the order typed.
  // Elements are keyed and reused, so a re-render keeps focus and scroll where they were.
  function render() {
    var atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    var stored = Array.from(state.messages.values()).sort(function (a, b) {
      return a.seq - b.seq;
    });
    var storedClientIds = new Set(
      stored.map(function (m) {
        return m.client_id;
      })
    );
    var entries = [];
    stored.forEach(function (message) {
      entries.push({ key: "m:" + message.id, build: buildMessage.bind(null, message), message: message });
    });
    state.drafts.forEach(function (text, id) {
      entries.push({ key: "d:" + id, build: buildDraft.bind(null, text), draft: text });
    });
    state.outbox.forEach(function (item) {
      if (storedClientIds.has(item.client_id)) return;
      entries.push({ key: pendingKey(item), build: buildPending.bind(null, item) });
    });
    var wanted = new Set(
      entries.map(function (entry) {
        return entry.key;
      })
    );
    nodes.forEach(function (node, key) {
      if (!wanted.has(key)) {
        node.remove();
        nodes.delete(key);
      }
    });
    if (!entries.length) {
      if (welcome.parentNode !== log) log.insertBefore(welcome, log.firstChild);
    } else if (welcome.parentNode === log) {
      welcome.remove();
    }
    var previous = null;
    entries.forEach(function (entry) {
      var node = nodes.get(entry.key);
      if (!node) {
        node = entry.build();
        nodes.set(entry.key, node);
      } else if (entry.message && entry.message.rateable) {
        showRating(node, entry.message.rating);
      } else if (entry.draft !== undefined) {
        updateDraft(node, entry.draft);
      }
      var expected = previous ? previous.nextSibling : log.firstChild;
      if (node !== expected) log.insertBefore(node, expected);
      previous = node;
    });
    renderChoices(stored);
    updateUnread();
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  // Quick replies belong to the latest message only: once the customer has answered, they go.
  function renderChoices(stored) {
    log.querySelectorAll(".choices").forEach(function (node) {
      node.remove();
    });
    var last = stored[stored.length - 1];
    var waiting = state.outbox.some(function (item) {
      return item.state !== "failed";
    });
    if (!last || last.role === "customer" || !last.choices || !last.choices.length || waiting) return;
    var node = nodes.get("m:" + last.id);
    var box = el("div", { class: "choices" });
    last.choices.forEach(function (choice) {
      var button = el("button", { type: "button", text: choice });
      button.addEventListener("click", function () {
        send(choice);
      });
      box.appendChild(button);
    });
    node.appendChild(box);
  }

  function setConnection(kind) {
    if (kind === "open") {
      connLine.hidden = true;
      return;
    }
    connLine.textContent = t(kind);
    connLine.hidden = false;
  }

  function setStatus(status, announce) {
    var previous = state.status;
    state.status = status;
    var busyWithHuman = status === "waiting_agent" || status === "agent";
    handoffButton.hidden = busyWithHuman;
    if (status === "waiting_agent" || status === "agent" || status === "closed") {
      statusLine.textContent = t("status_" + status);
      statusLine.hidden = false;
    } else if (announce && status === "bot" && previous && previous !== "bot") {
      statusLine.textContent = t("status_bot");
      statusLine.hidden = false;
    } else {
      statusLine.hidden = true;
    }
  }

  function showCsat(stateName) {
    csatBox.textContent = "";
    if (stateName === "thanks") {
      csatBox.appendChild(el("p", { text: t("csatThanks") }));
      csatBox.hidden = false;
      return;
    }
    if (stateName !== "ask") {
      csatBox.hidden = true;
      return;
    }
    csatBox.setAttribute("aria-label", t("csatPrompt"));
    csatBox.appendChild(el("p", { text: t("csatPrompt") }));
    var row = el("div", { class: "csat-scale" });
    [1, 2, 3, 4, 5].forEach(function (score) {
      var button = el("button", {
        type: "button",
        text: String(score),
        "aria-label": t("csatRate", { n: score }),
      });
      button.addEventListener("click", function () {
        if (sendFrame({ type: "csat", score: score })) {
          row.querySelectorAll("button").forEach(function (b) {
            b.disabled = true;
          });
        }
      });
      row.appendChild(button);
    });
    csatBox.appendChild(row);
    csatBox.hidden = false;
  }

  function showToast(text) {
    toast.textContent = text;
    toast.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () {
      toast.hidden = true;
    }, TOAST_MS);
  }

  function errorText(code, reason) {
    var key = "error_" + code;
    return T[key] ? t(key) : reason || t("error_generic");
  }

  function showOtherTyping(role, on) {
    clearTimeout(otherTypingTimer);
    if (!on) {
      typingLine.hidden = true;
      return;
    }
    typingLine.textContent = role === "agent" ? t("typingAgent") : t("typingBot");
    typingLine.hidden = false;
    otherTypingTimer = setTimeout(function () {
      typingLine.hidden = true;
    }, TYPING_SHOWN_MAX_MS);
  }

  // The launcher counts answers that arrived while the panel was closed.
  function updateUnread() {
    if (state.open) state.readSeq = state.lastSeq;
    var count = 0;
    state.messages.forEach(function (message) {
      if (message.role !== "customer" && message.seq > (state.readSeq || 0)) count += 1;
    });
    badge.textContent = count > 99 ? "99+" : String(count);
    badge.hidden = !count;
    var label = count ? t("open") + " (" + t("unread", { n: count }) + ")" : t("open");
    launcher.setAttribute("aria-label", label);
  }

  // ---- socket --------------------------------------------------------------------------

  function isOpen() {
    return socket !== null && socket.readyState === WebSocket.OPEN;
  }

  function sendFrame(frame) {
    if (!isOpen()) return false;
    socket.send(JSON.stringify(frame));
    return true;
  }

  function connect() {
    if (refused || (socket && socket.readyState <= WebSocket.OPEN)) return;
    clearTimeout(retryTimer);
    retryTimer = null;
    setConnection(attempts ? "reconnecting" : "connecting");
    var url =
      server.replace(/^http/, "ws") +
      "/ws/chat/?kb=" +
      encodeURIComponent(kb) +
      "&lang=" +
      encodeURIComponent(lang);
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
      sendHello();
      // Frames on one socket arrive in order, so these follow the hello: messages typed while
      // disconnected, and any sent before the drop that were never acknowledged (the server
      // stores a client_id once, so a resend cannot double them).
      flushOutbox();
    };
    ws.onmessage = function (event) {
      var frame;
      try {
        frame = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      if (frame && typeof frame.type === "string") handleFrame(frame, ws);
    };
    ws.onclose = function (event) {
      if (socket !== ws) return;
      socket = null;
      typingSent = false;
      showOtherTyping(null, false);
      state.outbox.forEach(function (item) {
        if (item.state === "sent") item.state = "queued";
      });
      render();
      if (event.code === 4403) {
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

  function sendHello() {
    var token = storeGet(storageKey);
    resuming = !!token;
    sendFrame({ type: "hello", token: token, last_seq: state.lastSeq, locale: lang });
  }

  // Forget the stored conversation (its token expired, it was erased, or it was closed) so the
  // next message starts a new one.
  function forgetConversation() {
    storeSet(storageKey, null);
    resetConversation();
    setStatus(null, false);
  }

  function flushOutbox() {
    clearTimeout(flushTimer);
    state.outbox.forEach(function (item) {
      if (item.state === "failed") return;
      if (sendFrame({ type: "message", client_id: item.client_id, text: item.text })) item.state = "sent";
    });
    render();
  }

  function upsert(message) {
    if (!message || !message.id) return;
    var known = state.messages.get(message.id);
    state.messages.set(message.id, known ? Object.assign({}, known, message) : message);
    if (typeof message.seq === "number" && message.seq > state.lastSeq) state.lastSeq = message.seq;
    if (message.client_id) dropFromOutbox(message.client_id);
  }

  function endDraft(streamId) {
    state.drafts.delete(streamId);
    state.doneStreams.add(streamId);
  }

  function dropFromOutbox(clientId) {
    state.outbox = state.outbox.filter(function (item) {
      return item.client_id !== clientId;
    });
  }

  function resetConversation() {
    state.conversationId = null;
    state.lastSeq = 0;
    state.readSeq = null;
    state.messages.clear();
    state.drafts.clear();
  }

  function handleFrame(frame, ws) {
    switch (frame.type) {
      case "session":
        resuming = false;
        if (state.conversationId !== null && frame.conversation_id !== state.conversationId) {
          resetConversation(); // a new conversation (the old one was closed or is gone)
        }
        state.conversationId = frame.conversation_id;
        // What the conversation held before this page attached is not "new" on the launcher.
        if (state.readSeq === null) state.readSeq = frame.last_seq || 0;
        if (frame.token) storeSet(storageKey, frame.token);
        if (frame.status) setStatus(frame.status, false);
        showCsat(frame.csat_pending ? "ask" : "none");
        break;
      case "ack":
        dropFromOutbox(frame.client_id);
        upsert(frame.message);
        break;
      case "message":
        if (frame.message && frame.message.stream_id) endDraft(frame.message.stream_id);
        upsert(frame.message);
        if (frame.message && frame.message.role !== "customer") showOtherTyping(null, false);
        break;
      case "stream":
        if (!frame.stream_id || state.doneStreams.has(frame.stream_id)) return;
        state.drafts.set(frame.stream_id, String(frame.text || ""));
        break;
      case "stream_end":
        endDraft(frame.stream_id);
        break;
      case "csat_request":
        showCsat("ask");
        break;
      case "csat_done":
        showCsat("thanks");
        break;
      case "typing":
        // The customer's own typing, from another tab of theirs, is not shown.
        if (frame.role !== "customer") showOtherTyping(frame.role, !!frame.on);
        break;
      case "status":
        setStatus(frame.status, true);
        break;
      case "rated":
        var rated = state.messages.get(frame.message_id);
        if (rated) rated.rating = frame.value;
        break;
      case "error":
        handleError(frame, ws);
        break;
      default:
        return; // a newer server's frame: ignore it
    }
    render();
  }

  function handleError(frame, ws) {
    var code = frame.code;
    var item =
      frame.client_id &&
      state.outbox.find(function (entry) {
        return entry.client_id === frame.client_id;
      });
    if (code === "bad_token" || (code === "not_found" && resuming)) {
      // The stored conversation is gone (token expired, or the conversation was erased): the
      // socket has none yet, so the next message here starts a new one.
      resuming = false;
      forgetConversation();
      showToast(t("error_bad_token"));
      flushOutbox();
      return;
    }
    if (code === "closed" && item) {
      // The conversation ended while the customer was away: this socket stays attached to it,
      // so open a fresh one without the token; the message waits in the outbox and goes there.
      item.state = "queued";
      if (ws === socket) {
        forgetConversation();
        socket = null;
        ws.close(1000);
        connect();
      }
      return;
    }
    if (item && code === "rate_limited") {
      item.state = "queued";
      clearTimeout(flushTimer);
      flushTimer = setTimeout(flushOutbox, RATE_LIMIT_RETRY_MS);
    } else if (item) {
      item.state = "failed";
      item.error = errorText(code, frame.reason);
    }
    showToast(errorText(code, frame.reason));
  }

  // ---- actions -------------------------------------------------------------------------

  function send(text) {
    text = text.trim();
    if (!text) return false;
    var n = charCount(text);
    if (n > MAX_CHARS) {
      showToast(t("tooLongLocal", { n: n, max: MAX_CHARS }));
      return false;
    }
    var item = { client_id: uuid(), text: text, state: "queued" };
    state.outbox.push(item);
    stopTyping();
    if (sendFrame({ type: "message", client_id: item.client_id, text: text })) item.state = "sent";
    else connect();
    render();
    log.scrollTop = log.scrollHeight;
    return true;
  }

  function rate(messageId, value) {
    if (!sendFrame({ type: "rate", message_id: messageId, value: value })) {
      showToast(t("error_offline"));
    }
  }

  function stopTyping() {
    clearTimeout(typingTimer);
    if (typingSent) sendFrame({ type: "typing", on: false });
    typingSent = false;
  }

  function noteTyping() {
    if (!typingSent && textarea.value.trim() && sendFrame({ type: "typing", on: true })) typingSent = true;
    clearTimeout(typingTimer);
    typingTimer = setTimeout(stopTyping, TYPING_IDLE_MS);
  }

  function updateComposer() {
    var n = charCount(textarea.value);
    var over = n > MAX_CHARS;
    counter.hidden = n < COUNTER_FROM;
    counter.textContent = t("counter", { n: n, max: MAX_CHARS });
    counter.classList.toggle("over", over);
    textarea.setAttribute("aria-invalid", String(over));
    sendButton.disabled = over || !textarea.value.trim();
    textarea.style.height = "auto";
    textarea.style.height = Math.min(textarea.scrollHeight + 2, 120) + "px";
  }

  function submit() {
    if (send(textarea.value)) {
      textarea.value = "";
      updateComposer();
    }
    textarea.focus();
  }

  function openPanel(text) {
    state.open = true;
    panel.hidden = false;
    root.classList.add("open");
    launcher.setAttribute("aria-expanded", "true");
    connect();
    render();
    log.scrollTop = log.scrollHeight;
    if (typeof text === "string" && text) {
      textarea.value = text;
      updateComposer();
    }
    textarea.focus();
  }

  function closePanel() {
    state.open = false;
    panel.hidden = true;
    root.classList.remove("open");
    launcher.setAttribute("aria-expanded", "false");
    launcher.focus();
  }

  launcher.addEventListener("click", function () {
    if (state.open) closePanel();
    else openPanel();
  });
  closeButton.addEventListener("click", closePanel);
  handoffButton.addEventListener("click", function () {
    if (!sendFrame({ type: "handoff" })) showToast(t("error_offline"));
  });
  panel.addEventListener("keydown", function (event) {
    if (event.key === "Escape") {
      event.preventDefault();
      closePanel();
    }
  });
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    submit();
  });
  textarea.addEventListener("keydown", function (event) {
    // Enter sends, Shift+Enter is a new line; an IME composing Chinese uses Enter to commit.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
      event.preventDefault();
      submit();
    }
  });
  textarea.addEventListener("input", function () {
    updateComposer();
    noteTyping();
  });
  window.addEventListener("online", reconnectNow);
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible" && (state.open || storeGet(storageKey))) reconnectNow();
  });

  function mount() {
    document.body.appendChild(host);
    updateComposer();
    render();
    // A returning customer reconnects at once, so an agent's reply shows as unread on the launcher.
    if (storeGet(storageKey)) connect();
  }

  window.csWidget = { open: openPanel, close: closePanel };
  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount);
})();
