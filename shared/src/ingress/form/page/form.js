(function () {
  "use strict";
  var form = document.getElementById("lead-form");
  var status = document.getElementById("form-status");
  var button = document.getElementById("submit");
  var country = document.getElementById("country");
  var phone = document.getElementById("phone");
  var t = form.dataset;

  function errorBox(input) {
    return document.getElementById(input.getAttribute("aria-describedby").split(" ").pop());
  }
  function setError(input, message) {
    if (message) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
    errorBox(input).textContent = message || "";
  }
  function say(message, bad) {
    status.textContent = message || "";
    status.className = bad ? "bad" : "";
  }
  function phoneOk(value) {
    return /^(\+|00)?\d{6,15}$/.test(value.replace(/[\s().\/-]/g, ""));
  }
  function fullPhone() {
    var value = phone.value.trim();
    if (value.slice(0, 2) === "00") value = "+" + value.slice(2);
    if (value.charAt(0) === "+") return value;
    return "+" + country.options[country.selectedIndex].getAttribute("data-code") + " " + value;
  }
  function check() {
    var name = document.getElementById("name");
    var consent = document.getElementById("consent");
    var bad = [];
    [
      [name, name.value.trim() ? "" : t.missingName],
      [phone, phoneOk(phone.value) ? "" : phone.getAttribute("data-invalid")],
      [consent, consent.checked ? "" : consent.getAttribute("data-invalid")]
    ].forEach(function (pair) {
      setError(pair[0], pair[1]);
      if (pair[1]) bad.push(pair[0]);
    });
    return bad;
  }
  function payload() {
    var data = {
      name: document.getElementById("name").value.trim(),
      phone: fullPhone(),
      consent: true
    };
    Array.prototype.forEach.call(form.querySelectorAll("[data-extra]"), function (input) {
      if (input.value.trim()) data[input.name] = input.value.trim();
    });
    var token = form.querySelector('[name="cf-turnstile-response"]');
    data["cf-turnstile-response"] = token ? token.value : "";
    return data;
  }
  function newChallenge() {
    if (window.turnstile && typeof window.turnstile.reset === "function") {
      try { window.turnstile.reset(); } catch (e) { /* a fresh token comes with the next try */ }
    }
  }
  function refused(code, error) {
    if (code === 422) {
      var input = error.field ? form.querySelector('[name="' + String(error.field).replace(/["\\]/g, "") + '"]') : null;
      var message = (t.lang === "en" && error.message) || (input && input.getAttribute("data-invalid")) || t.badField;
      if (input && input.type !== "hidden") {
        setError(input, message);
        say(t.fix, true);
        input.focus();
      } else {
        say(message, true);
      }
      return;
    }
    newChallenge();
    say(code === 403 ? t.denied : code === 429 ? t.limited : code === 503 ? t.down : t.failed, true);
  }
  function accepted() {
    var confirmation = document.getElementById("confirmation");
    say("");
    form.hidden = true;
    confirmation.hidden = false;
    confirmation.focus();
  }

  form.addEventListener("input", function (event) {
    if (event.target.getAttribute("aria-invalid")) setError(event.target, "");
  });
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (button.disabled) return;
    var bad = check();
    if (bad.length) {
      say(t.fix, true);
      bad[0].focus();
      return;
    }
    var data = payload();
    if (!data["cf-turnstile-response"]) {
      say(t.wait, true);
      return;
    }
    button.disabled = true;
    say(t.sending);
    fetch(location.pathname, {
      method: "POST",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify(data),
      credentials: "same-origin"
    }).then(function (response) {
      if (response.status === 202) return accepted();
      return response.json().catch(function () { return {}; }).then(function (answer) {
        refused(response.status, (answer && answer.error) || {});
      });
    }).catch(function () {
      newChallenge();
      say(t.failed, true);
    }).then(function () {
      button.disabled = false;
    });
  });
}());
