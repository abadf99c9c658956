"""The operator console: server-rendered pages the service serves itself under /ui/ (aiohttp
and Jinja, every template autoescaped; no script, one stylesheet). `Console` builds the
sub-application; the wiring mounts it at /ui. A viewer reads every page; an operator also
pauses, resumes, approves, rejects and promotes.

Pages, forms and element ids (kept stable: the browser tests and the benchmark use them).
Every form is POSTed with the hidden field `csrf`; after a change the answer is 303 to the
page named.

Sign-in and every page
  GET  /ui/login[?next=/ui/...]  form #login-form -> POST /ui/login, fields `token` (input
                                 #token, button #login), `next`, `csrf`; #login-problem on a
                                 refusal (401 unknown token, 403 stale form or other site)
  POST /ui/logout                form #logout-form in the header, button #logout -> /ui/login
  every page                     header #top, nav #nav with #nav-now, #nav-history,
                                 #nav-policies, #nav-approvals, #nav-control; #who-name,
                                 #who-role; #paused-banner while paused; main #main;
                                 errors: h1 and #error (403 refused, 404, 400...)
  GET  /ui/static/console.css    the stylesheet

Now        GET /ui/              table #firing, a tr.alert per alert firing (newest first),
                                 cells td.began, td.alertname, td.labels (span.label),
                                 td.state (span.badge, its class state-<state>), td.policy,
                                 td.reason, td.run (a link /ui/runs/<id>); #quiet when none
                                 fires; #more past 200; reloads itself every 10 s
Run        GET /ui/runs/{id}     #run-id, dl #run-facts (#run-alertname, #run-outcome,
                                 #run-reason, #run-guard, #run-policy, #run-revision with
                                 a#policy-link when REMEDIATOR_POLICY_REPOSITORY_URL is set,
                                 #run-target, #run-started, #run-finished, #run-plan); tables
                                 #alert-labels and #alert-annotations (td.name, td.value);
                                 ol #steps, li.step.read or li.step.change with id
                                 step-<phase>-<position> (.action, .outcome, .duration,
                                 .attempts, .message, pre.params, pre.data), #no-steps;
                                 section.approval#approval-<id> with table.answers (td.who,
                                 td.via, td.verdict, td.note), #no-approvals; table #messages,
                                 tr.message-row (td.channel, td.action, td.delivery, td.summary,
                                 td.error), #no-messages; 404 for an unknown id
History    GET /ui/history       form #history-filters (GET): fields alertname
                                 (#filter-alertname), target (#filter-target), policy
                                 (#filter-policy), outcome (select #filter-outcome), since
                                 (#filter-since), until (#filter-until), datetime-local in UTC
                                 or RFC 3339; button #search, link #clear; table #runs, tr.run
                                 (td.started with the run's link, td.alertname, td.target,
                                 td.policy, td.outcome, td.reason); #no-runs; 50 a page,
                                 a#next-page (older, `cursor=`), a#first-page (newest);
                                 #history-problem and 400 for a filter it cannot use
Policies   GET /ui/policies[?days=7|14|30]
                                 #counted-at (the ledger, counted at most once a
                                 minute); dl #policy-set (#policy-count, #policy-revision,
                                 #reload-state, #reload-error while the last reload was
                                 refused, #guardrails); #guard-problem; a section.policy
                                 #policy-<name> each: span.badge.demoted, p.demotion, form
                                 #promote-<name> (.promote-form, operators), table.ledger
                                 (td.runs, td.effective, td.share), div.plots of three
                                 figure.plot / svg.plot (runs a day, effective share, time to
                                 resolve), p.guards (breakers, budgets left, blast radius),
                                 p.no-runs; #promote-result after a promotion
           POST /ui/policies/{name}/promote            -> /ui/policies?policy=..&result=..
Approvals  GET /ui/approvals     section.request#approval-<id> per pending request (.alertname,
                                 .step, .target, .policy, .approvers, .expires, pre.params,
                                 dd.shown-<key>: change, diagnostics, guards); form
                                 #answer-<id> (.answer-form, operators): `note` (#note-<id>),
                                 button `decision` value approve (#approve-<id>) or reject
                                 (#reject-<id>); #no-pending; table #decided, tr.decided-request;
                                 #answer-result (class result-<code>) after an answer
           POST /ui/approvals/{id}   -> /ui/approvals?answered=<id>&result=approved|counted|
                                 rejected|not-approver|already|closed|unknown|bad
Control    GET /ui/control       #pause-state (#paused-by, #paused-at, #paused-reason while
                                 paused); form #pause-form (`reason`, input #reason, button
                                 #pause) or #resume-form (button #resume), operators only,
                                 #read-only for a viewer; #control-problem; table #switches,
                                 tr.switch (td.at, td.kind, td.by, td.reason), #no-switches
           POST /ui/control/pause, POST /ui/control/resume    -> /ui/control

A form without its token, with another's, or whose Origin (else Referer) is another site is
refused (403), and so is a viewer's. A person not signed in is sent (303) to
/ui/login?next=<the page>; a link followed from another site (Sec-Fetch-Site: cross-site)
first goes round through a page of the console's own (a#continue, meta refresh), so that the
SameSite=Strict cookie is sent. Every answer carries the Content-Security-Policy of
`security.CONTENT_SECURITY_POLICY`, X-Content-Type-Options: nosniff and Referrer-Policy:
same-origin.
"""

from remediator.console.app import Console

__all__ = ["Console"]
