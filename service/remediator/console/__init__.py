"""The operator console: server-rendered pages the service serves itself under /ui/ (aiohttp
and Jinja, every template autoescaped; no script, one stylesheet). `Console` builds the
sub-application; the wiring mounts it at /ui.

Pages, forms and element ids (kept stable: the browser tests and the benchmark use them):

GET  /ui/login              sign-in page; form #login-form, POST /ui/login, fields
                            `token` (input #token), `next`, `csrf`; problem #login-problem
POST /ui/logout             form #logout-form (in the header), field `csrf`; button #logout
GET  /ui/                   Now: table #firing, a row tr.alert per alert firing, its cells
                            td.began, td.alertname, td.labels, td.state (span.badge), td.policy,
                            td.reason, td.run (a link to the run); #quiet when none fires;
                            reloads itself every 10 s (meta refresh)
GET  /ui/static/console.css the stylesheet

Every page: header #top with nav #nav (#nav-now, #nav-history, #nav-policies, #nav-approvals,
#nav-control), #who-name, #who-role; #paused-banner while remediation is paused; errors in
#error (403 for a viewer's post, a form without its token or from another site).

Every form carries the hidden field `csrf` (the session's form token) and is refused (403)
without it or when its Origin (else Referer) is another site. A person not signed in is sent
(303) to /ui/login?next=<the page>; a link followed from another site first goes round
through a page of the console's own (#continue), so the SameSite=Strict cookie is sent.
"""

from remediator.console.app import Console

__all__ = ["Console"]
