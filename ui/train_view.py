"""The Train page's widgets: a form generated from the config dataclasses, and the live progress panel."""

from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any

import streamlit as st
import torch

from mtc_core import figures
from mtc_core.data import make_dataset
from mtc_core.defaults import dataset_defaults
from mtc_core.models import MODELS, build_model
from mtc_core.models.architectures import ARCHITECTURES
from mtc_core.train import TrainConfig, resolved_model_params
from ui import runs, training, widgets

JOBS_KEY = "train_jobs"  # the session's TrainingJobs, oldest first
ANNOUNCED_KEY = "train_announced"  # ids of finished jobs whose run was already put into the picker
FROM_DATASET = ("image_shape", "dataset_size")  # filled in from the dataset by resolved_model_params
DATASETS = ("toy", "squares", "shapes2d")


def field_comments(cls: type) -> dict[str, str]:
    """The trailing comment of each dataclass field (`name: type = default  # comment`), bases included."""
    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            source = inspect.getsource(klass)
            comments.update(dict(re.findall(r"^\s+(\w+)\s*:[^=\n]*=[^#\n]*#\s*(.+?)\s*$", source, re.M)))
    return comments


def _choices(comment: str, default: str) -> list[str] | None:
    """Options listed in a field comment as `a | b | c`, when the default is one of them."""
    match = re.search(r"\w+(?: \| \w+)+", comment)
    options = match[0].split(" | ") if match else []
    return options if default in options else None


def _field_input(f: dataclasses.Field, help_text: str, key: str) -> Any:
    default = f.default
    if f.name == "architecture":
        choice = st.selectbox(f.name, ["auto", *ARCHITECTURES], key=key,
                              help="auto: conv64 for 64x64 images, mlp otherwise. " + help_text)
        return None if choice == "auto" else choice
    if isinstance(default, bool):
        return st.checkbox(f.name, value=default, help=help_text, key=key)
    if isinstance(default, int):
        return st.number_input(f.name, value=default, step=1, help=help_text, key=key)
    if isinstance(default, float) or (default is None and "float" in str(f.type)):
        return st.number_input(f.name, value=default, format="%g", help=help_text, key=key, placeholder="default")
    options = _choices(help_text, str(default))
    if options:
        return st.selectbox(f.name, options, index=options.index(default), help=help_text, key=key)
    return st.text_input(f.name, value=str(default), help=help_text, key=key)


def _default_fields(dataset: str) -> dict[str, Any]:
    """The form's training fields (widget key -> value) at the dataset's defaults."""
    return {f"train_{name}": value for name, value in dataset_defaults(dataset).items()}


def _apply_dataset_defaults() -> None:
    st.session_state.update(_default_fields(st.session_state["train_dataset"]))


def config_form(model_name: str) -> TrainConfig | None:
    """The training form for one variant; returns a validated TrainConfig when submitted, None otherwise.
    Values out of bounds are reported with the config's own message (ValueError) and nothing starts."""
    model_cls = MODELS[model_name]
    comments = field_comments(model_cls.Config)
    train_comments = field_comments(TrainConfig)
    devices = ["auto", "cpu", *(["cuda"] if torch.cuda.is_available() else [])]
    # outside the form, so that picking a dataset fills in its defaults (the CLI's: mtc_core.defaults) at once
    dataset = st.selectbox("dataset", DATASETS, key="train_dataset", on_change=_apply_dataset_defaults,
                           help="toy: 32x32, three objects, disentangles in about a minute; squares: one moving "
                                "square; shapes2d: dSprites' 64x64 grid (conv64, slow on a CPU)")
    for key, value in _default_fields(dataset).items():
        st.session_state.setdefault(key, value)
    with st.form("train_form"):
        left, right = st.columns(2)
        with left:
            st.markdown("**Training**")
            steps = st.number_input("steps", step=100, key="train_steps", help=train_comments["steps"])
            batch_size = st.number_input("batch_size", step=8, key="train_batch_size", help=train_comments["batch_size"])
            lr = st.number_input("lr", step=1e-4, format="%g", key="train_lr",
                                 help=train_comments["lr"] + "; the default is the dataset's (mtc_core.defaults, as the CLI)")
            seed = st.number_input("seed", value=0, step=1, key="train_seed", help=train_comments["seed"])
            device = st.selectbox("device", devices, key="train_device", help=train_comments["device"])
        with right:
            st.markdown(f"**{model_cls.__name__} config**")
            params = {f.name: _field_input(f, comments.get(f.name, ""), f"train_p_{f.name}")
                      for f in dataclasses.fields(model_cls.Config) if f.name not in FROM_DATASET}
        submitted = st.form_submit_button("Start training", type="primary", key="train_start", icon=":material/play_arrow:")
    if not submitted:
        return None
    params = {k: v for k, v in params.items() if v is not None}
    try:
        config = TrainConfig(model=model_name, model_params=params, dataset={"name": dataset}, steps=int(steps),
                             batch_size=int(batch_size), lr=float(lr), seed=int(seed), device=device,
                             eval_every=max(1, int(steps) // 50), eval_size=256, checkpoint_every=max(0, int(steps) // 4))
        build_model(config.model, resolved_model_params(config, make_dataset(config.dataset)))  # validates the variant's fields
    except (ValueError, TypeError) as error:
        st.error(f"Not started: {error}")
        return None
    return config


def session_jobs() -> list[training.TrainingJob]:
    return st.session_state.setdefault(JOBS_KEY, [])


def start(config: TrainConfig) -> training.TrainingJob:
    job = training.submit(config, runs.runs_dir(), f"{config.model}-{config.dataset['name']}")
    session_jobs().append(job)
    return job


def progress_panel(shown: int = 3) -> None:
    """The session's latest trainings, redrawn every second while one of them is still going."""
    jobs = session_jobs()
    if jobs:
        active = any(not job.done for job in jobs)
        st.fragment(_draw_jobs, run_every=1.0 if active else None)(shown)


def _draw_jobs(shown: int) -> None:
    for job in reversed(session_jobs()[-shown:]):
        p = job.progress()
        with st.container(border=True):
            st.markdown(f"**{job.config.model}** on **{job.config.dataset['name']}**, {p.total} steps: *{p.state}*")
            if p.state == "queued":
                running, queued = training.server_load()
                st.warning(f"Busy: {running} training(s) running on this server, {queued} queued; "
                           f"yours is number {p.queue_position} in the queue and starts when a slot frees.")
            st.progress(min(p.step / p.total, 1.0), text=f"step {p.step} / {p.total} · {p.seconds:.0f} s")
            if p.history:
                widgets.plotly_chart(figures.training_curves(p.history), key=f"train_curves_{job.id}")
            if not job.done:
                st.button("Cancel", key=f"train_cancel_{job.id}", on_click=job.cancel.set, icon=":material/stop:")
            elif p.state == "failed":
                st.error(f"Training failed: {p.message}")
            elif p.run_dir is not None:
                st.success(f"Saved to `{p.run_dir}` ({p.state}{': ' + p.message if p.message else ''}); "
                           "it is in the sidebar's model picker.")
    announced = st.session_state.setdefault(ANNOUNCED_KEY, set())
    finished = [job for job in session_jobs() if job.done and job.run_dir is not None and job.id not in announced]
    if finished:
        announced.update(job.id for job in finished)
        st.session_state[widgets.PENDING_KEY] = str(finished[-1].run_dir)
        st.rerun(scope="app")  # redraw the sidebar so the new run is in the picker, selected


def sidebar_status() -> None:
    """One line per running training of this session, on every page (redrawn with the page)."""
    for job in session_jobs():
        if not job.done:
            st.sidebar.caption(f"Training {job.config.model}: step {job.step} / {job.config.steps} ({job.state})")
