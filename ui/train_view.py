"""The Train page's widgets: a form generated from the config dataclasses, and the live progress panel."""

from __future__ import annotations

import dataclasses
import inspect
import re
import uuid
from pathlib import Path
from typing import Any

import streamlit as st
import torch

from mtc_core import runs
from mtc_core.data import BUILT_IN
from mtc_core.models import MODELS
from mtc_core.training import defaults
from mtc_core.training.trainer import SPEED_OPTIONS, TrainConfig
from mtc_core.visualize import curves
from services import run_listing, training_queue
from ui import curves as run_views
from ui import guard, widgets

JOBS_KEY = "train_jobs"  # ids of the jobs this session started, oldest first
ANNOUNCED_KEY = "train_announced"  # ids of finished jobs whose run was already put into the picker
FORM_KEY = "train_form_generation"  # a used form is replaced by a fresh one: a second trigger of its button is stale
SHOWN = 5  # finished trainings listed besides the running and queued ones
FROM_DATASET = ("image_shape", "dataset_size")  # filled in from the dataset by resolved_model_params


def field_comments(cls: type) -> dict[str, str]:
    """The trailing comment of each dataclass field (`name: type = default  # comment`), bases included."""
    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            source = inspect.getsource(klass)
            comments.update(dict(re.findall(r"^\s+(\w+)\s*:[^=\n]*=[^#\n]*#\s*(.+?)\s*$", source, re.M)))
    return comments


def _field_input(f: dataclasses.Field, help_text: str, key: str) -> Any:
    default = f.default
    options = list(f.metadata.get("choices", ()))  # a field with a fixed set of values declares them (models.base.field_choices)
    if f.name == "architecture":
        choice = st.selectbox(f.name, ["auto", *options], key=key,
                              help="auto: conv64 for 64x64 images, mlp otherwise. " + help_text)
        return None if choice == "auto" else choice
    if isinstance(default, bool):
        return st.checkbox(f.name, value=default, help=help_text, key=key)
    if isinstance(default, int):
        return st.number_input(f.name, value=default, step=1, help=help_text, key=key)
    if isinstance(default, float) or (default is None and "float" in str(f.type)):
        return st.number_input(f.name, value=default, format="%g", help=help_text, key=key, placeholder="default")
    if options:
        return st.selectbox(f.name, options, index=options.index(default), help=help_text, key=key)
    return st.text_input(f.name, value=str(default), help=help_text, key=key)


def _default_fields(dataset: str) -> dict[str, Any]:
    """The form's training fields (widget key -> value) at the dataset's defaults."""
    return {f"train_{name}": value for name, value in defaults.dataset_defaults(dataset).items()}


def _apply_dataset_defaults() -> None:
    st.session_state.update(_default_fields(st.session_state["train_dataset"]))


def config_form(model_name: str) -> TrainConfig | None:
    """The training form for one variant; returns a validated TrainConfig when submitted, None otherwise.
    Values out of bounds are reported with the config's own message (ValueError) and nothing starts."""
    model_cls = MODELS[model_name]
    comments = field_comments(model_cls.Config)
    train_comments = field_comments(TrainConfig)
    devices = ["auto", "cpu", *(["cuda"] if torch.cuda.is_available() else [])]
    generation = st.session_state.setdefault(FORM_KEY, 0)
    # outside the form, so that picking a dataset fills in its defaults (the CLI's: mtc_core.training.defaults) at once
    dataset = st.selectbox("dataset", BUILT_IN, index=BUILT_IN.index(defaults.DATASET), key="train_dataset",
                           on_change=_apply_dataset_defaults,
                           help="toy: 32x32, three objects, disentangles in about a minute; squares: one moving "
                                "square; shapes2d: dSprites' 64x64 grid (conv64, slow on a CPU)")
    for key, value in _default_fields(dataset).items():
        st.session_state.setdefault(key, value)
    # Enter in a field does not submit (only the button does); a double click's second trigger names the button of a
    # form that is gone by then, so it starts nothing
    with st.form(f"train_form_{generation}", enter_to_submit=False):
        left, right = st.columns(2)
        with left:
            st.markdown("**Training**")
            steps = st.number_input("steps", step=100, key="train_steps", help=train_comments["steps"])
            batch_size = st.number_input("batch_size", step=8, key="train_batch_size", help=train_comments["batch_size"])
            lr = st.number_input("lr", step=1e-4, format="%g", key="train_lr",
                                 help=train_comments["lr"] + "; the default is the dataset's (mtc_core.training.defaults, as the CLI)")
            seed = st.number_input("seed", value=defaults.default("seed"), step=1, key="train_seed", help=train_comments["seed"])
            device = st.selectbox("device", devices, index=devices.index(defaults.default("device")), key="train_device",
                                  help=train_comments["device"])
            speed = {}
            if "cuda" in devices:  # off, and not offered, where they do not help: the CPU (bench/RESULTS.md)
                with st.expander("GPU speed options"):
                    speed = {name: st.checkbox(name, value=default, key=f"train_{name}", help=train_comments[name])
                             for name, default in SPEED_OPTIONS.items()}
        with right:
            st.markdown(f"**{model_cls.__name__} config**")
            params = {f.name: _field_input(f, comments.get(f.name, ""), f"train_p_{f.name}")
                      for f in dataclasses.fields(model_cls.Config) if f.name not in FROM_DATASET}
        submitted = st.form_submit_button("Start training", type="primary", key=f"train_start_{generation}",
                                          icon=":material/play_arrow:", disabled=guard.read_only())
    guard.note("Training")
    if not submitted:
        return None
    try:  # every setting the form does not show at the CLI's default (one home: mtc_core.training.defaults)
        config = defaults.train_config(model_name, {"name": dataset}, params, steps=int(steps), batch_size=int(batch_size),
                                       lr=float(lr), seed=int(seed), device=device, **speed)
    except (ValueError, TypeError) as error:
        st.error(f"Not started: {error}")
        return None
    return config


OWNER_KEY, OWNER_PARAM = "train_owner", "owner"  # this session's owner id, kept in the Train page's address too
OWNER_FORM = re.compile(r"[0-9a-f]{32}")


def owner() -> str:
    """This session's owner id: the one in the page's address (?owner=..., which a reload keeps), else the session's,
    else a new one. The jobs a session starts carry it, so that after a reload they are still yours. It is not a key:
    who may cancel stays the rule of ui.guard (services/access.py)."""
    from_address = st.query_params.get(OWNER_PARAM)
    if from_address and OWNER_FORM.fullmatch(from_address):
        st.session_state[OWNER_KEY] = from_address
    return st.session_state.setdefault(OWNER_KEY, uuid.uuid4().hex)


def session_jobs() -> list[training_queue.TrainingJob]:
    """The jobs this session started, or its owner id did (before a reload), oldest first; they may have finished."""
    me = owner()
    ids = st.session_state.setdefault(JOBS_KEY, [])
    ids.extend(j.id for j in training_queue.owned(me) if j.id not in ids)
    if ids:
        st.query_params[OWNER_PARAM] = me  # a reload of this page finds them again
    return [job for job in training_queue.jobs() if job.id in ids]


def start(config: TrainConfig) -> training_queue.TrainingJob | None:
    """Start a submitted form's training, and retire the form: its button's next trigger (a double click) is stale.
    None, after an error message, when this session may not start one (ui.guard). The run is named by
    `training_queue.run_name`: model, regularisation strength, dataset, seed and a time suffix."""
    try:
        guard.check("train")
    except guard.Refused as error:
        st.error(f"Not started: {error}")
        return None
    st.session_state[FORM_KEY] = st.session_state.get(FORM_KEY, 0) + 1
    job = training_queue.submit(config, run_listing.runs_dir(), owner=owner())
    guard.done("train")
    st.session_state.setdefault(JOBS_KEY, []).append(job.id)
    st.query_params[OWNER_PARAM] = owner()
    return job


def resume(path: str) -> None:
    """The Resume button: continue an interrupted run in the background."""
    try:
        guard.check("train")
        job = training_queue.resume(path, owner=owner())
    except ValueError as error:  # not allowed here, already training, or a config that cannot be resumed
        st.session_state["train_resume_error"] = str(error)
        return
    guard.done("train")
    st.session_state.setdefault(JOBS_KEY, []).append(job.id)


def cancel(job_id: str) -> None:
    """The Cancel button: stop a training of this server at its next step (it saves as the CLI does)."""
    try:
        guard.check("cancel")
    except guard.Refused as error:
        st.session_state[f"train_cancel_error_{job_id}"] = str(error)  # shown by its job's _status (a fragment)
        return
    job = training_queue.find(job_id)
    if job is not None:
        job.cancel.set()


def interrupted_panel() -> None:
    """Runs whose training process died (a server restart, a kill): each with a Resume button."""
    if "train_resume_error" in st.session_state:
        st.error(f"Not resumed: {st.session_state.pop('train_resume_error')}")
    interrupted = run_listing.interrupted_runs()
    if not interrupted:
        return
    st.subheader("Interrupted")
    guard.note("Resuming")
    st.caption("These runs say *running*, but no training of this server is writing them: their process stopped (a "
               "restart, a kill); or *failed*: their training stopped on an error (a full disk). Resume continues "
               "exactly from the last checkpoint; resume a run only when no other "
               "process (a `python -m mtc_core train` in a terminal) is still training it.")
    for entry in interrupted:
        config, _ = run_listing.inspect_run(entry.path)
        step, total = (config or {}).get("step", "?"), ((config or {}).get("train") or {}).get("steps", "?")
        with st.container(border=True):
            left, right = st.columns([4, 1])
            left.markdown(f"**{entry.model}** on **{entry.dataset}** · `{entry.path}` · *{entry.status}* at the checkpoint of "
                          f"step {step} / {total}" + (f": {config['message']}" if entry.status == "failed" and config
                                                      and isinstance(config.get("message"), str) else ""))
            right.button("Resume", key=f"train_resume_{Path(entry.path).name}", on_click=resume, args=(entry.path,),
                         icon=":material/play_arrow:", disabled=guard.read_only())


# Redraw intervals while a training runs: its step counter, its loss and TC curves, the sidebar's line. Each redraw is a
# Streamlit rerun (~70 ms of the server's CPU even for one line, measured) and a browser repaint, taken from a training
# that on a small machine needs every core it can get.
STATUS_S, CURVES_S, SIDEBAR_S = 2.0, 10.0, 5.0


def _announce(mine: list[training_queue.TrainingJob]) -> None:
    """Put this session's newly finished run into the picker, selected: once per job (any of its owner's tabs)."""
    announced = st.session_state.setdefault(ANNOUNCED_KEY, set())
    fresh = [j for j in mine if j.done and j.run_dir is not None and j.id not in announced and not j.announced]
    announced.update(j.id for j in mine if j.done)
    if fresh and fresh[-1].run_dir.is_dir():
        for job in fresh:
            job.announced = True
        st.session_state[widgets.PENDING_KEY] = str(fresh[-1].run_dir.resolve())
        st.rerun(scope="app")  # redraw the sidebar so the new run is in the picker, selected


def your_panel() -> bool:
    """This session's trainings, at the top of the page where the eye is after Start: running and queued ones with
    live progress, curves and Cancel; then the latest finished one with its numbers, curves and a button that opens
    it. True while one of them is running or queued."""
    mine = session_jobs()
    _announce(mine)
    going = [j for j in reversed(mine) if not j.done]
    finished = [j for j in reversed(mine) if j.done]
    if not going and not finished:
        return False
    st.subheader("Your trainings")
    if going:
        guard.note("Cancelling")
    server_going = _server_going()
    for job in going:
        with st.container(border=True):
            st.fragment(_status, run_every=STATUS_S)(job.id, "you", server_going)
            st.fragment(_curves, run_every=CURVES_S)(job.id)
    if finished:
        _finished(finished[0])
        if len(finished) > 1:
            st.caption("Earlier: " + ", ".join(f"`{j.run_dir.name if j.run_dir else j.title}` ({j.state})" for j in finished[1:SHOWN]))
    return bool(going)


def _finished(job: training_queue.TrainingJob) -> None:
    """A finished training of this session: how it ended, its final TCs and reconstruction, its curves, Open."""
    with st.container(border=True):
        _status(job.id, "you", ())
        if job.run_dir is None or not (job.run_dir / runs.CONFIG).is_file() or job.state == "failed":
            return
        run_views.open_button(job.run_dir, key=f"train_open_{job.id}")
        tc = run_views.headline(job.run_dir, key=f"train_result_{job.id}")
        run_views.training_curves(job.run_dir, key=f"train_final_curves_{job.id}", tc=tc)


def others_panel() -> None:
    """The trainings other sessions started on this server: running and queued ones with progress and Cancel (anyone
    who may change things may cancel: ui.guard), then the latest finished ones."""
    mine = {j.id for j in session_jobs()}
    jobs = [j for j in training_queue.jobs() if j.id not in mine]
    if not jobs:
        return
    st.subheader("Other trainings on this server")
    going = [j for j in reversed(jobs) if not j.done]
    if going:
        guard.note("Cancelling")
    server_going = _server_going()
    for job in going + [j for j in reversed(jobs) if j.done][:SHOWN]:
        with st.container(border=True):
            if job.done:
                _status(job.id, "another session", ())
                continue
            st.fragment(_status, run_every=STATUS_S)(job.id, "another session", server_going)
            st.fragment(_curves, run_every=CURVES_S)(job.id)


def _server_going() -> tuple[str, ...]:
    """The ids of the server's running and queued trainings, newest first: when this changes, the panels redraw."""
    return tuple(j.id for j in reversed(training_queue.jobs()) if not j.done)


def _status(job_id: str, who: str, going: tuple[str, ...]) -> None:
    """One job's state, progress and Cancel; a full redraw once it ends or another job starts on the server."""
    job = training_queue.find(job_id)
    if going and (job.done or _server_going() != going):
        st.rerun(scope="app")
    p = job.progress()
    name = f"`{job.run_dir.name}`" if job.run_dir is not None else f"**{job.title}**"
    st.markdown(f"{name}, {job.title}, {p.total} steps (started by {who}): *{p.state}*")
    if p.state == "queued":
        running, queued = training_queue.server_load()
        st.warning(f"Busy: {running} training(s) running on this server, {queued} queued; "
                   f"this one is number {p.queue_position} in the queue and starts when a slot frees.")
    speed = f" · {p.steps_per_s:.1f} steps/s" if p.steps_per_s else ""
    if job.threads and not job.done:
        speed += f" · {job.threads} CPU thread{'s' if job.threads > 1 else ''}"
    st.progress(min(p.step / p.total, 1.0), text=f"step {p.step} / {p.total} · {p.seconds:.0f} s{speed}")
    if f"train_cancel_error_{job_id}" in st.session_state:
        st.error(f"Not cancelled: {st.session_state.pop(f'train_cancel_error_{job_id}')}")
    if not job.done:
        st.button("Cancel", key=f"train_cancel_{job.id}", on_click=cancel, args=(job.id,), icon=":material/stop:",
                  disabled=guard.read_only())
    elif p.state == "failed":
        st.error(f"Training failed: {p.message}")
    elif p.run_dir is not None:
        st.success(f"Saved to `{p.run_dir}` ({p.state}{': ' + p.message if p.message else ''}); "
                   "it is in the sidebar's model picker.")


def _curves(job_id: str) -> None:
    history = training_queue.find(job_id).progress().history
    if history:
        widgets.plotly_chart(curves.run_figure(history), key=f"train_curves_{job_id}")
    else:
        st.caption("The curves appear at the first evaluation step.")


def sidebar_status(live: bool = True) -> None:
    """One line per running or queued training of this server, on every page; refreshed every SIDEBAR_S while one runs
    when `live` (the Train page, whose panel shows the same, draws it once)."""
    if any(not job.done for job in training_queue.jobs()):
        with st.sidebar:
            st.fragment(_sidebar_lines, run_every=SIDEBAR_S if live else None)()


def _sidebar_lines() -> None:
    going = [job for job in training_queue.jobs() if not job.done]
    if not going:
        st.rerun(scope="app")  # all finished: redraw the app without this timer
    for job in going:
        st.caption(f"Training {job.title}: step {job.step} / {job.config.steps} ({job.state})")
