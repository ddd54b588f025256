// Ticker chips with autocomplete over the plain "AAPL:10, MSFT" text field, which stays the form's real value:
// without script the field works as it is. Each chip has an optional shares box; its count is written after a colon.
(function () {
  "use strict";
  // [symbol, shares as typed] per entry, as the server reads the field (subscriptions/forms.py parse_entries).
  function entries(value) {
    var found = [];
    value.toUpperCase().replace(/\s*:\s*/g, ":").split(/[\s,;]+/).forEach(function (part) {
      if (!part) return;
      var at = part.indexOf(":");
      found.push(at > 0 ? [part.slice(0, at), part.slice(at + 1)] : [part, ""]);
    });
    return found;
  }
  function enhance(field) {
    var url = field.getAttribute("data-search-url");
    var symbols = [], shares = {};
    entries(field.value).forEach(function (e) {
      if (symbols.indexOf(e[0]) < 0) symbols.push(e[0]);
      if (e[1] && !shares[e[0]]) shares[e[0]] = e[1];
    });
    var box = document.createElement("div");
    box.className = "chips-input";
    var list = document.createElement("ul");
    list.className = "chips";
    var input = document.createElement("input");
    input.type = "text";
    input.autocomplete = "off";
    input.id = field.id;
    input.setAttribute("role", "combobox");
    input.setAttribute("aria-autocomplete", "list");
    input.setAttribute("aria-expanded", "false");
    input.setAttribute("aria-controls", field.id + "-options");
    if (field.getAttribute("aria-describedby")) input.setAttribute("aria-describedby", field.getAttribute("aria-describedby"));
    if (field.getAttribute("aria-invalid")) input.setAttribute("aria-invalid", "true");
    input.placeholder = symbols.length ? "" : "Type a symbol or a company";
    var options = document.createElement("ul");
    options.className = "options";
    options.id = field.id + "-options";
    options.setAttribute("role", "listbox");
    options.hidden = true;
    field.id = field.id + "-value";
    field.type = "hidden";
    field.parentNode.insertBefore(box, field);
    box.appendChild(list);
    box.appendChild(input);
    box.parentNode.insertBefore(options, box.nextSibling);
    var active = -1, timer = null, results = [], message = "";
    // Symbols the directory does not list: marked on their chip at once, and named next to the field.
    var bad = [], known = [];
    var live = document.createElement("p");
    live.className = "error";
    live.id = input.id + "-live-error";
    live.setAttribute("role", "alert");
    live.hidden = true;
    box.parentNode.insertBefore(live, options.nextSibling);
    var serverError = document.getElementById(field.name + "-error");
    function invalid() {
      // The server's message stands until the field is changed; from then on the live one speaks.
      var edited = !!field.getAttribute("data-edited");
      var server = !!serverError && !edited;
      if (serverError && edited) serverError.hidden = true;
      var any = bad.length > 0 || server;
      box.classList.toggle("invalid", any);
      if (any) input.setAttribute("aria-invalid", "true"); else input.removeAttribute("aria-invalid");
      live.textContent = bad.map(function (s) { return "\u201c" + s + "\u201d is not a listed US ticker."; }).join(" ");
      live.hidden = bad.length === 0 || server;
      var described = (field.getAttribute("aria-describedby") || "").split(" ").filter(function (id) { return id && id !== live.id; });
      if (bad.length) described.unshift(live.id);
      input.setAttribute("aria-describedby", described.join(" "));
    }
    function check(symbol) {
      if (known.indexOf(symbol) >= 0 || bad.indexOf(symbol) >= 0) return;
      fetch(url + "?q=" + encodeURIComponent(symbol), { headers: { Accept: "application/json" } })
        .then(function (r) { return r.json().catch(function () { return {}; }); })
        .then(function (data) {
          if (!data.results) return;  // the list is not loaded, or the check failed: the form will say so
          var listed = data.results.some(function (r) { return r.symbol === symbol; });
          if (listed) known.push(symbol); else bad.push(symbol);
          sync();
        })
        .catch(function () {});
    }

    function write() {
      field.value = symbols.map(function (s) { return shares[s] ? s + ":" + shares[s] : s; }).join(", ");
    }
    function sync() {
      write();
      list.innerHTML = "";
      symbols.forEach(function (symbol) {
        var li = document.createElement("li");
        li.textContent = symbol + " ";
        if (bad.indexOf(symbol) >= 0) {
          li.className = "chip-bad";
          li.title = "Not a listed US ticker";
        }
        var held = document.createElement("input");
        held.type = "text";
        held.className = "chip-shares";
        held.inputMode = "decimal";
        held.autocomplete = "off";
        held.placeholder = "shares";
        held.value = shares[symbol] || "";
        held.setAttribute("aria-label", "Shares of " + symbol + " you hold (optional)");
        held.addEventListener("input", function () {
          var typed = held.value.replace(/[\s,;:]+/g, "");
          if (typed) shares[symbol] = typed; else delete shares[symbol];
          field.setAttribute("data-edited", "1");
          write();  // not sync(): the chips stay as they are, so the box keeps the focus
        });
        li.appendChild(held);
        var remove = document.createElement("button");
        remove.type = "button";
        remove.className = "chip-remove";
        remove.setAttribute("aria-label", "Remove " + symbol);
        remove.textContent = "×";
        remove.addEventListener("click", function () {
          symbols = symbols.filter(function (s) { return s !== symbol; });
          delete shares[symbol];
          bad = bad.filter(function (s) { return s !== symbol; });
          field.setAttribute("data-edited", "1");
          sync();
          input.focus();
        });
        li.appendChild(remove);
        list.appendChild(li);
      });
      invalid();
    }
    function typedCount() {  // ":10" when "AAPL:10" is typed and a suggestion picked, so the count is kept
      var entry = entries(input.value)[0];
      return entry && entry[1] ? ":" + entry[1] : "";
    }
    function close() { options.hidden = true; input.setAttribute("aria-expanded", "false"); active = -1; }
    function add(typed, picked) {
      // "AAPL:10" typed in one go: the symbol becomes a chip, the count goes in its shares box.
      var entry = entries(typed)[0] || ["", ""];
      var symbol = entry[0];
      if (symbol && entry[1]) shares[symbol] = entry[1];
      if (symbol && symbols.indexOf(symbol) < 0) {
        symbols.push(symbol);
        field.setAttribute("data-edited", "1");
        if (picked) known.push(symbol); else check(symbol);
      }
      input.value = "";
      close();
      sync();
    }
    function show() {
      options.innerHTML = "";
      results.forEach(function (r, i) {
        var li = document.createElement("li");
        li.setAttribute("role", "option");
        li.id = options.id + "-" + i;
        li.className = i === active ? "active" : "";
        var b = document.createElement("strong");
        b.textContent = r.symbol;
        li.appendChild(b);
        li.appendChild(document.createTextNode(" · " + r.name));
        li.addEventListener("mousedown", function (e) { e.preventDefault(); add(r.symbol + typedCount(), true); });
        options.appendChild(li);
      });
      if (!results.length && message) {
        // "The ticker list is not loaded yet": said where the suggestions would be, never shown as a result.
        var note = document.createElement("li");
        note.className = "options-note";
        note.textContent = message;
        options.appendChild(note);
      }
      options.hidden = results.length === 0 && !message;
      input.setAttribute("aria-expanded", results.length ? "true" : "false");
      if (active >= 0) input.setAttribute("aria-activedescendant", options.id + "-" + active);
    }
    input.addEventListener("input", function () {
      var q = input.value.trim();
      if (/[,\s]$/.test(input.value)) { add(q.replace(/[,\s]+$/, "")); return; }
      q = q.split(":")[0];  // "AAPL:1": search the symbol, not the count
      clearTimeout(timer);
      if (!q) { close(); return; }
      timer = setTimeout(function () {
        fetch(url + "?q=" + encodeURIComponent(q), { headers: { Accept: "application/json" } })
          .then(function (r) { return r.json().catch(function () { return {}; }); })
          .then(function (data) {
            results = data.results || [];
            message = results.length ? "" : (data.error || (data.results ? "No listed ticker matches \u201c" + q + "\u201d." : ""));
            active = results.length ? 0 : -1;
            show();
          })
          .catch(function () { results = []; message = ""; close(); });
      }, 150);
    });
    input.addEventListener("keydown", function (e) {
      if (e.key === "ArrowDown" && results.length) { active = (active + 1) % results.length; show(); e.preventDefault(); }
      else if (e.key === "ArrowUp" && results.length) { active = (active - 1 + results.length) % results.length; show(); e.preventDefault(); }
      else if (e.key === "Enter" && input.value.trim()) {
        e.preventDefault();
        if (active >= 0 && !options.hidden) add(results[active].symbol + typedCount(), true); else add(input.value);
      } else if (e.key === "Backspace" && !input.value && symbols.length) { delete shares[symbols.pop()]; sync(); }
      else if (e.key === "Escape") { close(); }
    });
    input.addEventListener("blur", function () { if (input.value.trim()) add(input.value); close(); });
    field.form.addEventListener("submit", function () { if (input.value.trim()) add(input.value); });
    sync();
    symbols.forEach(check);  // chips carried back by the server (a form with errors): mark the unknown ones
  }
  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("input[data-ticker-input]"), enhance);
  });
})();
