/* django-jobs admin: refresh live jobs in place, without a page reload. No build step.
 *
 * Elements carry data-dj-job="<id>" and data-dj-field="status|progress|message|eta|elapsed|
 * worker|retry|title|started_at|finished_at|while-active". A progress element says
 * data-dj-live="true" while its job runs or is due; the page polls the admin's JSON endpoint for
 * those jobs only, and stops when none is left. The job list also asks, every few seconds, how
 * many jobs arrived since it was made (under its filters) and offers to show them.
 * A workflow's page asks for the workflow's state (registry.workflow_status() as JSON) every
 * few seconds instead, and updates its members and its own badge, bar, ETA and counts the same
 * way, until the workflow has finished.
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
            // Fields of a workflow's page only.
            case "attempt":
                if (state.attempt !== undefined) {
                    el.textContent = state.attempt;
                }
                break;
            case "counts":
                if (state.counts !== undefined) {
                    el.textContent = state.counts;
                }
                break;
            case "why":
                if (state.why !== undefined) {
                    el.textContent = state.why;
                    el.className = state.status === "failed" ? "dj-error-line" : "dj-muted dj-why";
                }
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

    // -- a workflow's page ------------------------------------------------------------------

    var workflowTimer = null;
    var STATUSES = ["waiting", "scheduled", "running", "succeeded", "failed", "cancelled",
                    "skipped"];
    var UNITS = [["d", 86400], ["h", 3600], ["min", 60], ["s", 1]];

    function visible(text) {
        // As the server shows text: control characters spelled out (\x1b), never passed on.
        return String(text || "").replace(/[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/g, function (c) {
            return "\\x" + ("0" + c.charCodeAt(0).toString(16)).slice(-2);
        });
    }

    function durationWords(seconds) {
        // The two largest units, rounded down: "2 min 5 s" (django_jobs.humanize).
        var whole = Math.floor(seconds);
        var parts = [];
        for (var i = 0; i < UNITS.length && parts.length < 2; i++) {
            var count = Math.floor(whole / UNITS[i][1]);
            whole = whole % UNITS[i][1];
            if (count || parts.length) {
                parts.push([count, UNITS[i][0]]);
            }
        }
        var words = parts.filter(function (p) { return p[0]; })
            .map(function (p) { return p[0] + " " + p[1]; }).join(" ");
        return words || "0 s";
    }

    function etaWords(info) {
        if (info.status !== "running" || !info.eta) {
            return "\u2014";
        }
        // Microseconds are more than Date.parse() promises to read.
        var seconds = (Date.parse(info.eta.replace(/(\.\d{3})\d+/, "$1")) - Date.now()) / 1000;
        return seconds <= 0 ? "any moment" : "in " + durationWords(seconds);
    }

    function countsWords(counts) {
        var total = 0;
        var parts = [];
        var statuses = STATUSES.concat(Object.keys(counts).filter(function (s) {
            return STATUSES.indexOf(s) === -1;
        }).sort());
        statuses.forEach(function (status) {
            if (counts[status]) {
                total += counts[status];
                parts.push(counts[status] + " " + status);
            }
        });
        var words = total + (total === 1 ? " member" : " members");
        return parts.length ? words + ": " + parts.join(", ") : words;
    }

    function percentOf(status, progress) {
        if (status === "succeeded") {
            return 100;
        }
        return Math.max(0, Math.min(100, Math.floor(progress * 100)));
    }

    function updateWorkflow(info) {
        update({id: info.id, status: info.status, status_label: info.status,
                percent: Math.floor(info.progress * 100), live: false, eta: etaWords(info),
                counts: countsWords(info.counts)});
        var seen = {};
        info.members.forEach(function (member) {
            seen[member.id] = true;
            update({id: member.id, status: member.status, status_label: member.status,
                    percent: percentOf(member.status, member.progress), live: false,
                    message: visible(member.message), attempt: member.attempt,
                    why: visible(member.error)});
        });
        // A retry stands in for its attempt, and jobs may join later: say so, and let the
        // operator reload when it suits them.
        var changed = info.members.length !== settings.members;
        var rows = document.querySelectorAll("[data-dj-member]");
        Array.prototype.forEach.call(rows, function (row) {
            if (!seen[row.getAttribute("data-dj-member")]) {
                changed = true;
            }
        });
        var notice = document.getElementById("dj-workflow-changed");
        if (changed && notice) {
            notice.querySelector("a").href = window.location.href.split("#")[0];
            notice.hidden = false;
        }
    }

    function pollWorkflow() {
        workflowTimer = null;
        if (document.hidden || !settings.live) {
            return;  // Resumed by visibilitychange; nothing changes once it has finished.
        }
        window.fetch(settings.workflow_url, {
            credentials: "same-origin",
            headers: {"Accept": "application/json"}
        }).then(function (response) {
            if (!response.ok) {
                throw new Error("HTTP " + response.status);
            }
            return response.json();
        }).then(function (info) {
            updateWorkflow(info);
            settings.live = info.status === "running";
            scheduleWorkflow(settings.interval);
        }).catch(function () {
            scheduleWorkflow(settings.interval * 5);
        });
    }

    function scheduleWorkflow(delay) {
        if (workflowTimer === null) {
            workflowTimer = window.setTimeout(pollWorkflow, delay);
        }
    }

    function startWorkflow() {
        settings.interval = settings.interval || 2000;
        document.addEventListener("visibilitychange", function () {
            if (!document.hidden) {
                scheduleWorkflow(0);
            }
        });
        scheduleWorkflow(settings.interval);
    }

    function start() {
        document.addEventListener("submit", confirmBeforePost);
        var config = document.getElementById("dj-live-config");
        if (!config || !window.fetch) {
            return;
        }
        settings = JSON.parse(config.textContent);
        if (settings.workflow_url) {
            startWorkflow();
            return;
        }
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
