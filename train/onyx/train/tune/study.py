"""A study run by one worker: Optuna's storage, sampler and pruner around the objective.

    settings = StudySettings("image-pets", Path("runs/tune"), trials=12)
    study = run_study(base_config, space, settings)

- Storage: an Optuna RDB URL; by default the SQLite file `<out>/<study>.db`. Rerunning with the
  same name and storage continues the study (`load_if_exists`). Several workers (processes, or
  machines sharing a PostgreSQL/MySQL URL) running the same command share one study: that is
  Optuna's own distributed mode; each asks the storage for its next trial.
- Budget: `trials` counts the study's trials that finished (complete or pruned) or are running
  anywhere, so N workers together run about `trials` trials (workers that ask at the same
  instant can overshoot by one each); failed trials (Ctrl-C) do not count and are made up for
  on the next run. `timeout` (seconds) stops this worker from starting new trials.
- Heartbeats mark the trials of a worker that died (kill -9, a lost machine) failed after a
  grace period, so they neither count nor block.
- Ctrl-C: the running trial is marked failed (by Optuna, or here if the interrupt came outside
  the objective), the storage stays consistent, and KeyboardInterrupt reaches the caller.
- Checkpoints: only the best trial's are kept; the others' *.pt files are removed once their
  trials finish, so a 50-trial study does not fill the disk.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from onyx.train.config import TrainConfig
from onyx.train.tune.objective import Metric, Objective
from onyx.train.tune.space import Space

log = logging.getLogger(__name__)

PrunerName = Literal["median", "halving", "none"]
PRUNERS: tuple[PrunerName, ...] = ("median", "halving", "none")
_COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
# Workers beat every 30 s; one silent for 2 minutes is taken for dead.
HEARTBEAT_SECONDS = 30
GRACE_SECONDS = 120


@dataclass
class StudySettings:
    name: str
    # The study's folder is out_dir/name (trials, results); the default storage sits beside it.
    out_dir: Path
    storage: str = ""
    metric: Metric = "accuracy"
    pruner: PrunerName = "median"
    trials: int | None = None
    timeout: float | None = None
    sampler_seed: int | None = None
    progress: bool = True

    @property
    def study_dir(self) -> Path:
        return self.out_dir / self.name

    @property
    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{(self.out_dir / f'{self.name}.db').resolve()}"


def make_storage(url: str) -> RDBStorage:
    """The RDB storage, with heartbeats; a SQLite file waits for a busy writer (other local
    workers) instead of failing at once."""
    kwargs: dict[str, object] = {}
    if url.startswith("sqlite:"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        kwargs = {"connect_args": {"timeout": 60}}
    for attempt in range(3):  # workers creating the tables of a new database at once may clash
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.9
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(
                    url,
                    engine_kwargs=kwargs,
                    heartbeat_interval=HEARTBEAT_SECONDS,
                    grace_period=GRACE_SECONDS,
                )
        except Exception:  # sqlalchemy's OperationalError/IntegrityError of the race
            if attempt == 2:
                raise
            time.sleep(0.5 + attempt)
    raise AssertionError("unreachable")


def make_pruner(name: PrunerName) -> optuna.pruners.BasePruner:
    if name == "median":
        # The first trials run to the end: a median of one or two trials prunes at random; and
        # epoch 1 (mostly warm-up) says too little: the earliest prune is after epoch 2.
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.NopPruner()


def open_study(settings: StudySettings) -> optuna.Study:
    return optuna.create_study(
        storage=make_storage(settings.storage_url),
        sampler=optuna.samplers.TPESampler(seed=settings.sampler_seed),
        pruner=make_pruner(settings.pruner),
        study_name=settings.name,
        direction="maximize",
        load_if_exists=True,
    )


def finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def counted(study: optuna.Study) -> int:
    """Trials that use up the budget: finished (complete, pruned) or running anywhere."""
    return len(study.get_trials(deepcopy=False, states=_COUNTED))


def run_study(base: TrainConfig, space: Space, settings: StudySettings) -> optuna.Study:
    """Run trials until the budget is spent; KeyboardInterrupt leaves the storage consistent."""
    study = open_study(settings)
    objective = Objective(base, space, settings.metric, settings.study_dir)
    deadline = time.monotonic() + settings.timeout if settings.timeout else math.inf
    done = finished(study)
    if done:
        log.info("study %s: %d trials already finished; continuing", settings.name, done)
    bar = tqdm(total=settings.trials, initial=done, desc="trials", unit="trial",
               disable=not settings.progress, dynamic_ncols=True)  # fmt: skip
    try:
        while _trials_left(study, settings):
            study.optimize(objective, n_trials=1, callbacks=[_after_trial(settings, objective)])
            bar.n = finished(study)  # this worker's trials and every other worker's
            _show_best(bar, study)
            if time.monotonic() >= deadline:  # as Optuna's timeout: checked after a trial
                log.info("timeout: no new trial after %.0f s", settings.timeout)
                break
    except KeyboardInterrupt:
        _fail_interrupted(study, objective)
        raise
    finally:
        bar.close()
    return study


def _trials_left(study: optuna.Study, settings: StudySettings) -> bool:
    return settings.trials is None or counted(study) < settings.trials


def _show_best(bar: tqdm, study: optuna.Study) -> None:  # type: ignore[type-arg]
    best = best_trial(study)
    if best is not None and best.value is not None:
        bar.set_postfix(best=f"{best.value:.4f}", trial=best.number)  # refreshes the bar too
    else:
        bar.refresh()


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The best complete trial; None before the first one (`study.best_trial` raises)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    complete = [t for t in complete if t.value is not None and not math.isnan(t.value)]
    return max(complete, key=lambda t: (t.value, -t.number), default=None)


def _fail_interrupted(study: optuna.Study, objective: Objective) -> None:
    """The interrupt may land outside the objective (in Optuna, or in the storage while it
    reports), where Optuna leaves the trial running: mark it failed then."""
    trial = objective.current
    if trial is None:
        return
    try:
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
    except Exception as exc:  # the storage broke under the interrupt: heartbeats clean up
        log.warning("could not mark trial %d failed: %s", trial.number, exc)
        return
    log.warning("trial %d stopped by Ctrl-C and marked failed", trial.number)


def _after_trial(
    settings: StudySettings, objective: Objective
) -> Callable[[optuna.Study, FrozenTrial], None]:
    def callback(study: optuna.Study, trial: FrozenTrial) -> None:  # noqa: ARG001
        objective.current = None  # told: nothing left to mark failed on Ctrl-C
        remove_checkpoints(study, settings.study_dir)

    return callback


def remove_checkpoints(study: optuna.Study, study_dir: Path) -> None:
    """Remove the *.pt files of every finished trial but the best one (in this folder)."""
    best = best_trial(study)
    for trial in study.get_trials(deepcopy=False, states=_FINISHED):
        if best is not None and trial.number == best.number:
            continue
        folder = study_dir / f"trial-{trial.number:04d}"
        for path in folder.glob("*.pt"):
            path.unlink(missing_ok=True)
