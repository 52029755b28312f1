"""An Optuna study kept in a search's folder (a journal file, so a search run again continues where it stopped),
and the loop that runs its trials one at a time with progress shown."""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

JOURNAL = "study.journal"


def open_study(folder: Path, name: str, directions: list[str], sampler):
    """The study of this search, created or loaded. Trials a crash left running are failed (their work is lost);
    seeds whose trial failed are enqueued again, so every seed is still evaluated."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.trial import TrialState

    try:
        from optuna.storages.journal import JournalFileBackend
    except ImportError:  # optuna < 4
        from optuna.storages import JournalFileStorage as JournalFileBackend

    optuna.logging.set_verbosity(logging.WARNING)  # alembert's own progress lines say what happens
    folder.mkdir(parents=True, exist_ok=True)
    storage = JournalStorage(JournalFileBackend(str(folder / JOURNAL)))
    study = optuna.create_study(study_name=name, storage=storage, directions=directions, sampler=sampler,
                                load_if_exists=True)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):  # a process killed mid-trial
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    # a seed whose trial failed (interrupted, or killed) is enqueued again unless it is already done or waiting
    settled = [t.params or t.system_attrs.get("fixed_params") for t in study.get_trials(
        deepcopy=False, states=(TrialState.COMPLETE, TrialState.WAITING))]
    for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        seed = trial.system_attrs.get("fixed_params")
        if seed is not None and seed not in settled:
            study.enqueue_trial(seed)
            settled.append(seed)
    return study


def finished(study) -> list:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def run_trials(study, objective: Callable, total: int, describe: Callable, log: Callable[[str], None]) -> None:
    """Run trials until `total` have completed; after each, one progress line (`describe(frozen_trial)`)."""
    done = len(finished(study))
    if done >= total:
        log(f"{done}/{total} trials done")
        return
    while done < total:
        before = {t.number for t in finished(study)}
        study.optimize(objective, n_trials=1, catch=())
        for trial in (t for t in finished(study) if t.number not in before):
            done += 1
            log(f"trial {done}/{total}: {describe(trial)}")
