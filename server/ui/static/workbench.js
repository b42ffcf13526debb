// The policy workbench's only script (docs/workbench.md). The pages work without it
// when access is open; it adds three things:
//   - the copy buttons (curl command, test case) of the Try page;
//   - with IDGW_DATA_API_AUTH=bearer, the sign-in (this gateway's email login, or a pasted
//     token): the token is kept in the variable `token` only (never in storage, a cookie
//     or the URL), and every page, link and form is then fetched with it as an
//     Authorization header, the page's content swapped in;
//   - under `idgw policy studio`, a poll of /ui/state that shows a saved file's result.
"use strict";

(function () {
  const body = document.body;
  const bearer = body.dataset.auth === "bearer";
  let token = null;

  function page() {
    return document.getElementById("page");
  }

  function showSigninError(message) {
    const error = document.getElementById("signin-error");
    if (error) {
      error.textContent = message;
      error.hidden = false;
    }
  }

  async function load(url, init, push) {
    const headers = { "X-Workbench-Fragment": "1", "Authorization": "Bearer " + token };
    const response = await fetch(url, Object.assign({ cache: "no-store", credentials: "omit" }, init, {
      headers: Object.assign(headers, (init && init.headers) || {}),
    }));
    const text = await response.text();
    if (response.status === 401) {
      let message = "the token was refused";
      try {
        message = "The token was refused: " + JSON.parse(text).error_description;
      } catch (ignored) {
        // not the JSON error shape: keep the generic message
      }
      token = null;
      showSigninError(message);
      return;
    }
    const target = page();
    target.outerHTML = text;
    const swapped = page();
    if (swapped && swapped.dataset.title) {
      document.title = swapped.dataset.title + " · ID Gateway workbench";
    }
    if (push) {
      history.pushState({}, "", response.url || url);
    }
    document.getElementById("main").focus();
  }

  function inWorkbench(url) {
    return url.origin === location.origin && url.pathname.startsWith("/ui/") &&
      !url.pathname.startsWith("/ui/static/");
  }

  // The local login of docs/tokens.md: a session for the email, exchanged for tokens.
  async function signInLocally(email) {
    const post = function (path, body) {
      return fetch(path, {
        method: "POST", credentials: "omit", cache: "no-store",
        headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      }).then(async function (response) {
        const answer = await response.json();
        if (!response.ok) {
          throw new Error(answer.error_description || response.statusText);
        }
        return answer;
      });
    };
    const session = await post("/auth/authorize", { email: email, client_id: "idgw-workbench" });
    const tokens = await post("/auth/token", { grant_type: "session", session_id: session.session_id });
    return tokens.access_token;
  }

  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (form.hasAttribute("data-signin-local")) {
      event.preventDefault();
      signInLocally(document.getElementById("email").value.trim())
        .then(function (accessToken) {
          token = accessToken;
          return load(location.href, { method: "GET" }, false);
        })
        .catch(function (error) {
          showSigninError("Signing in failed: " + error.message);
        });
      return;
    }
    if (form.hasAttribute("data-signin")) {
      event.preventDefault();
      const input = document.getElementById("token");
      token = input.value.trim();
      input.value = "";
      if (token) {
        load(location.href, { method: "GET" }, false).catch(function (error) {
          showSigninError("The workbench could not be reached: " + error.message);
        });
      }
      return;
    }
    if (!bearer || token === null) {
      return;
    }
    event.preventDefault();
    const data = new URLSearchParams(new FormData(form));
    const action = new URL(form.getAttribute("action") || location.href, location.href);
    if (form.method.toLowerCase() === "post") {
      load(action.href, {
        method: "POST", body: data,
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
      }, false);
    } else {
      action.search = data.toString();
      load(action.href, { method: "GET" }, true);
    }
  });

  document.addEventListener("click", function (event) {
    const button = event.target.closest("button[data-copy]");
    if (button) {
      copy(button);
      return;
    }
    const link = event.target.closest("a[href]");
    if (!link || !bearer || token === null || event.ctrlKey || event.metaKey || event.shiftKey) {
      return;
    }
    const url = new URL(link.href, location.href);
    if (!inWorkbench(url)) {
      return;
    }
    event.preventDefault();
    load(url.href, { method: "GET" }, true);
  });

  window.addEventListener("popstate", function () {
    if (bearer && token !== null) {
      load(location.href, { method: "GET" }, false);
    }
  });

  function copy(button) {
    const source = document.getElementById(button.dataset.copy);
    const status = button.parentElement.querySelector(".copied");
    const text = source.textContent;
    const done = function () {
      if (status) {
        status.textContent = "Copied";
      }
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () {
        selectText(source);
        if (status) {
          status.textContent = "Selected: press Ctrl+C to copy";
        }
      });
    } else {
      selectText(source);
      if (status) {
        status.textContent = "Selected: press Ctrl+C to copy";
      }
    }
  }

  function selectText(element) {
    const range = document.createRange();
    range.selectNodeContents(element);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  // Studio: follow the files. A page showing a tried decision asks again with the same
  // input; a form being filled in is left alone (a notice offers the new result); any
  // other page reloads.
  const poll = body.dataset.poll;
  if (poll) {
    let busy = false;
    let typing = false;
    document.addEventListener("input", function () { typing = true; });
    setInterval(function () {
      if (busy) {
        return;
      }
      busy = true;
      fetch(poll, { cache: "no-store" })
        .then(function (response) { return response.json(); })
        .then(function (state) {
          if (state.state === body.dataset.state) {
            return;
          }
          body.dataset.state = state.state;
          const tried = document.querySelector("form[data-resubmit]");
          const notice = document.getElementById("files-changed");
          if (tried && !typing) {
            tried.submit();
          } else if (typing && notice) {
            notice.hidden = false;
          } else {
            location.reload();
          }
        })
        .catch(function () {
          // the studio stopped or restarts: try again at the next tick
        })
        .finally(function () { busy = false; });
    }, 400);
  }
})();
