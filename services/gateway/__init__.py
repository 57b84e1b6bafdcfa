"""Gateway: where people meet Koda (the Discord bot and the web console).

service.py     the service: starts the console, the bot (with a token), the sweeper, the digest
desk.py        approval decisions and expiry through ApprovalStore, and the approval metrics
controls.py    run a task now, pause, resume: what both front ends may change
status.py      read models: services, tasks (next fire, last run), run records and artifacts
reports.py     the words posted to Discord, redacted
events.py      the audit log: the gateway's own consumer, and reads for the digest and console
discord_bot.py discord.py client: approvals, reactions, chat, event delivery (imported lazily)
views.py       the Approve / Reject buttons (restart-safe dynamic items)
commands.py    /koda status | run | pause | resume | pending
console.py     the Starlette app (routes) and webserver.py the embedded uvicorn server
pages.py       the layout, CSS and the Services, Tasks and Events pages
run_pages.py   the Runs page and a run's page with its live timeline; run_data.py reads for them
approval_pages.py, cost_pages.py   the Approvals and Costs pages
static.py      the one script: refreshes a page's live region without a reload
auth.py        console token, session cookie and CSRF
"""
