/* django-jobs admin: refresh live jobs in place, without a page reload. No build step.
 *
 * Elements carry data-dj-job="<id>" and data-dj-field="status|progress|message|eta|elapsed|
 * worker|retry|title|started_at|finished_at|while-active". A progress element says
 * data-dj-live="true" while its job runs or is due; the page polls the admin's JSON endpoint for
 * those jobs only, and stops when none is left. The job list also asks, every few seconds, how
 * many jobs arrived since it was made (under its filters) and offers to show them.
 * Forms with data-dj-confirm ask before they post; without JavaScript they simply post. */
(function () {
    "use strict";

    var settings = null;
    var timer = null;

    function liveIds() {
        var ids = [];
        var bars = document.querySelectorAll('[data-dj-field="progress"][data-dj-live="true"]');
        Array.prototype.forEach.call(bars, function (el) {
            var id = el.getAttribute("data-dj-job");
            if (ids.indexOf(id) === -1) {
                ids.push(id);
            }
        });
        return ids;
    }

    function update(state) {
        var nodes = document.querySelectorAll('[data-dj-job="' + state.id + '"]');
        Array.prototype.forEach.call(nodes, function (el) {
            switch (el.getAttribute("data-dj-field")) {
            case "status":
                el.textContent = state.status_label;
                el.className = "dj-badge dj-status-" + state.status_label;
                break;
            case "progress":
                var bar = el.querySelector("progress");
                bar.value = state.percent;
                bar.textContent = state.percent + "%";
                el.querySelector(".dj-percent").textContent = state.percent + "%";
                el.setAttribute("data-dj-live", state.live ? "true" : "false");
                el.setAttribute("data-dj-status", state.status);
                break;
            case "message":
                el.textContent = state.message;
                el.title = state.message;
                break;
            case "eta":
                el.textContent = state.eta;
                break;
            case "elapsed":
                el.textContent = state.elapsed;
                break;
            case "worker":
                el.textContent = state.worker;
                break;
            case "retry":
                el.textContent = state.retry;
                break;
            case "started_at":
                el.textContent = state.started_at;
                break;
            case "finished_at":
                el.textContent = state.finished_at;
                break;
            case "title":
                if (state.title && el.textContent !== state.title) {
                    document.title = document.title.replace(el.textContent, state.title);
                    el.textContent = state.title;
                }
                break;
            case "while-active":
                el.hidden = !(state.status === "running" || state.status === "scheduled");
                break;
            }
        });
    }

    function forget(id) {
        // Gone from the database (pruned): stop asking about it.
        update({id: id, status: "", status_label: "", percent: 0, message: "", eta: "",
                elapsed: "", worker: "", retry: "", title: "", started_at: "",
                finished_at: "", live: false});
    }

    var newTimer = null;

    function pollNewRows() {
        newTimer = null;
        var notice = document.getElementById("dj-new-rows");
        if (!notice || !settings.new_url) {
            return;
        }
        if (document.hidden) {
            return;  // Resumed by visibilitychange.
        }
        // The list's own filters and search, so the count matches what "show" would list.
        var query = window.location.search.replace(/^\?/, "");
        var url = settings.new_url + "?since=" + encodeURIComponent(settings.since) +
            (query ? "&" + query : "");
        window.fetch(url, {
            credentials: "same-origin",
            headers: {"Accept": "application/json"}
        }).then(function (response) {
            if (!response.ok) {
                throw new Error("HTTP " + response.status);
            }
            return response.json();
        }).then(function (data) {
            if (data.count > 0) {
                var words = (data.more ? data.count + "+" : String(data.count)) + " new " +
                    (data.count === 1 ? "job" : "jobs") + " \u2014";
                notice.querySelector("[data-dj-new-count]").textContent = words;
                notice.querySelector("[data-dj-new-show]").href = window.location.href;
                notice.hidden = false;
            }
            scheduleNew(settings.new_interval);
        }).catch(function () {
            scheduleNew(settings.new_interval * 5);
        });
    }

    function scheduleNew(delay) {
        if (newTimer === null) {
            newTimer = window.setTimeout(pollNewRows, delay);
        }
    }

    function confirmBeforePost(event) {
        var form = event.target;
        var question = form.getAttribute && form.getAttribute("data-dj-confirm");
        if (!question && form.id === "changelist-form") {
            var action = form.querySelector('select[name="action"]');
            if (action && action.value === "cancel_jobs") {
                question = "Cancel the selected jobs?";
            }
        }
        if (question && !window.confirm(question)) {
            event.preventDefault();
        }
    }

    function schedule(delay) {
        if (timer === null) {
            timer = window.setTimeout(poll, delay);
        }
    }

    function poll() {
        timer = null;
        var ids = liveIds();
        if (!ids.length) {
            return;  // Nothing runs: stop polling.
        }
        if (document.hidden) {
            return;  // Resumed by visibilitychange.
        }
        var query = ids.map(function (id) { return "id=" + encodeURIComponent(id); }).join("&");
        window.fetch(settings.url + "?" + query, {
            credentials: "same-origin",
            headers: {"Accept": "application/json"}
        }).then(function (response) {
            if (!response.ok) {
                throw new Error("HTTP " + response.status);
            }
            return response.json();
        }).then(function (data) {
            var seen = {};
            data.jobs.forEach(function (state) {
                seen[state.id] = true;
                update(state);
            });
            ids.forEach(function (id) {
                if (!seen[id]) {
                    forget(id);
                }
            });
            schedule(settings.interval);
        }).catch(function () {
            schedule(settings.interval * 5);  // Back off while the server is unhappy.
        });
    }

    function start() {
        document.addEventListener("submit", confirmBeforePost);
        var config = document.getElementById("dj-live-config");
        if (!config || !window.fetch) {
            return;
        }
        settings = JSON.parse(config.textContent);
        settings.interval = settings.interval || 1000;
        settings.new_interval = settings.new_interval || 3000;
        document.addEventListener("visibilitychange", function () {
            if (!document.hidden) {
                schedule(0);
                scheduleNew(0);
            }
        });
        schedule(settings.interval);
        scheduleNew(settings.new_interval);
    }

    if (document.readyState === "loading") {
        document.addEventListener("DOMContentLoaded", start);
    } else {
        start();
    }
}());
