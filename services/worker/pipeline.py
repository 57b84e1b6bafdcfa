"""A run as a list of steps, one session each, resumable at the step.

A task without `steps` is one step named `main`. Before a step starts the ledger records it;
when it ends its artifact is on disk under `data/drafts/<run>/` and the ledger lists it as done,
so a redelivered run skips finished steps and never sends them to the model again. A turn cap
either ends the run (`turn_cap`) or, when the task says `continue`, resumes the same session up
to `max_continuations` times.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from koda.shared.messages import RunRequest
from koda.shared.run_record import StepRecord
from koda.shared.safe_write import UnsafePath, write_file
from koda.shared.tasks import Task

from .ledger import Claim, Ledger
from .options import SessionSpec
from .prompt import CONTINUE_PROMPT, user_prompt
from .session import SessionResult

#: Runs a session: (prompt, spec, seconds left) -> result. The service supplies it. A None
#: prompt resumes `spec.resume` at the call it was paused at.
SessionRunner = Callable[[str | None, SessionSpec, float], Awaitable[SessionResult]]


@dataclass(frozen=True)
class PausedSession:
    """A session paused at a gated call whose decision has come: resume it in its step."""

    session_id: str
    #: None replays the deferred call; a prompt when the transcript already has its result
    #: (a worker died after running it).
    prompt: str | None


@dataclass(frozen=True)
class StepPlan:
    id: str
    prompt: str
    skill: str | None
    max_turns: int
    artifact: str | None


def plan_steps(task: Task, request: RunRequest) -> list[StepPlan]:
    """The steps of a run; a request's own prompt (chat, heal) replaces a single-step task's."""
    if task.steps:
        return [StepPlan(s.id, s.prompt, s.skill or task.skill, s.max_turns or task.max_turns,
                         s.artifact or f"{s.id}.md") for s in task.steps]
    prompt = request.prompt or task.prompt or f"Follow the skill `{task.skill}` step by step."
    return [StepPlan("main", prompt, task.skill, task.max_turns, None)]


@dataclass
class RunOutcome:
    """The run so far: `outcome` is done, turn_cap, rate_limited, awaiting_approval (a gated
    call paused the session `session_id`), or failed."""

    outcome: str = "done"
    steps: list[StepRecord] = field(default_factory=list)
    text: str = ""
    turns: int = 0
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    error: str | None = None
    last: SessionResult | None = None
    window: dict[str, object] | None = None  # the last RateLimitEvent of any session
    models: dict[str, dict[str, float]] = field(default_factory=dict)
    cause: str | None = None  # set when no retry can help (missing_secret, no_handler, config)
    session_id: str | None = None  # the session paused at a gated call

    def add(self, result: SessionResult) -> None:
        self.window = result.window or self.window
        for model, usage in result.models.items():
            row = self.models.setdefault(model, dict.fromkeys(usage, 0))
            for key, value in usage.items():
                row[key] += value
        self.turns += result.turns
        self.cost_usd += result.cost_usd
        self.input_tokens += result.input_tokens
        self.output_tokens += result.output_tokens
        self.last = result


class Pipeline:
    """Runs the remaining steps of one claimed run."""

    def __init__(self, task: Task, request: RunRequest, ledger: Ledger, claim: Claim,
                 drafts: Path, system_for: Callable[[str | None], str], session: SessionRunner,
                 on_step: Callable[[str], None] | None = None, *, turn_cap: int | None = None,
                 model: str | None = None,
                 learnings: Callable[[], str | None] = lambda: None,
                 paused: PausedSession | None = None,
                 gate: object | None = None, session_store: object | None = None) -> None:
        self.paused = paused
        self.gate = gate  # gate.ApprovalGate: pauses gated calls, answers them on resume
        self.session_store = session_store
        self.turn_cap = turn_cap  # set by admission for a run let go on smaller
        self.model = model
        self.task = task
        self.request = request
        self.ledger = ledger
        self.claim = claim
        self.drafts = drafts
        self.system_for = system_for
        self.session = session
        self.on_step = on_step
        self.learnings = learnings  # read per step: a step may record one for the next

    async def run(self, deadline: float) -> RunOutcome:
        out = RunOutcome()
        steps = plan_steps(self.task, self.request)
        prior: list[tuple[str, Path]] = []
        for index, step in enumerate(steps):
            if step.id in self.claim.entry.steps_done:
                if step.artifact:
                    prior.append((step.id, self.drafts / step.artifact))
                out.steps.append(StepRecord(id=step.id, outcome="done (earlier delivery)",
                                            artifact=step.artifact))
                continue
            if self.on_step:
                self.on_step(step.id)
            if self.claim.entry.step != index:
                await self.ledger.update(self.claim, step=index, continuations=0)
            result, record = await self._step(step, index, prior, deadline, out)
            out.steps.append(record)
            if result.outcome == "awaiting_approval":
                out.outcome, out.session_id, out.text = "awaiting_approval", result.session_id, result.text
                return out
            if result.outcome != "done":
                out.outcome = {"turn_cap": "turn_cap", "rate_limited": "rate_limited"}.get(
                    result.outcome, "failed")
                out.error = f"step {step.id}: {result.error}" if len(steps) > 1 else result.error
                out.text = result.text
                return out
            if step.artifact:
                path = self.drafts / step.artifact
                if not path.exists() and not path.is_symlink():
                    # The agent did not save it itself: keep its final answer (never via a link).
                    home = self.drafts.parent.parent.parent
                    try:
                        write_file(home, path.relative_to(home).as_posix(), result.text)
                    except UnsafePath as exc:
                        out.error = str(exc)
                prior.append((step.id, path))
            await self.ledger.update(self.claim, steps_done=[*self.claim.entry.steps_done, step.id],
                                     step=index + 1, continuations=0, approval_id=None,
                                     session_id=None)
            out.text = result.text
        return out

    async def _step(self, step: StepPlan, index: int, prior: list[tuple[str, Path]], deadline: float,
                    out: RunOutcome) -> tuple[SessionResult, StepRecord]:
        prompt = user_prompt(step.prompt, context=self.request.context if index == 0 else None,
                             prior=prior, learnings=self.learnings())
        turns_allowed = min(step.max_turns, self.turn_cap or step.max_turns)
        spec = SessionSpec(system_append=self.system_for(step.skill), max_turns=turns_allowed,
                           max_budget_usd=self.task.max_budget_usd, gated=list(self.task.gated),
                           model=self.model, allowed_domains=list(self.task.allowed_domains),
                           gate=self.gate, session_store=self.session_store)
        continuations = self.claim.entry.continuations
        first: str | None = prompt
        if self.paused is not None:
            # The same options as the session had (same tools, sandbox, hook): only `resume`.
            spec = replace(spec, resume=self.paused.session_id)
            first, self.paused = self.paused.prompt, None
        turns = 0
        cost = 0.0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                result = SessionResult(outcome="timeout",
                                       error=f"time limit of {self.task.timeout_seconds}s reached")
                break
            result = await self.session(first, spec, left)
            out.add(result)
            turns += result.turns
            cost += result.cost_usd
            if (result.outcome == "turn_cap" and self.task.on_turn_cap == "continue"
                    and continuations < self.task.max_continuations and result.session_id):
                continuations += 1
                await self.ledger.update(self.claim, continuations=continuations)
                spec = replace(spec, resume=result.session_id)
                first = CONTINUE_PROMPT
                continue
            break
        return result, StepRecord(id=step.id, outcome=result.outcome, turns=turns, cost_usd=cost,
                                  continuations=continuations,
                                  artifact=step.artifact if result.outcome == "done" else None)
