"""What a checkpoint keeps of a run, and how the run continues from one: a part of the Trainer (engine/loop.py)."""
from __future__ import annotations

import time

from alembert.engine.state import RESULT_KEYS, rng_state, set_rng_state


class Resumable:
    """Writes the Trainer's checkpoints and restores a run from one: the run-wide part when it starts (the student,
    best state, result, log, sources' contents, and the run's plugins at a stage boundary), the rest when the
    stage it continues in starts (optimizer, schedule, objective, the stage's plugins, position, RNG states)."""

    def _save_checkpoint(self, position: dict, within_stage: tuple | None) -> None:
        """Everything the run needs to continue from here. `within_stage`: the stage's (objective, optimizer,
        scheduler), or None at a stage's end, where the next stage builds its own."""
        result = {key: getattr(self.result, key) for key in RESULT_KEYS + ("early_stopped",)}
        result.update(self.selection.state(), seconds=self._elapsed_before + time.perf_counter() - self._fit_start)
        state = dict(position, phase=self.plan.phase, result=result, logger_rows=self.logger.rows, rng=rng_state(),
                     plugins=self.plugins.state_dict(),
                     sources={n: s.state_dict() for n, s in self.sources.items() if hasattr(s, "state_dict")})
        tensors = {"student": self.student.state_dict(), **self.plan.extra}  # never wrapped: DDP wraps its tap
        if self.selection.best_state is not None:
            tensors["best"] = self.selection.best_state
        if within_stage is not None:
            objective, optimizer, scheduler = within_stage
            state.update(optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict())
            tensors["objective"] = objective.state_dict()
        if self.accelerator.is_main_process:
            self.plan.checkpoints.save(state, tensors)
        self.accelerator.wait_for_everyone()

    def _restore_run(self) -> tuple[int, float]:
        """What a checkpoint holds for the whole run: the student, the best state, the result so far, the log, the
        sources' contents. Returns the stage to continue in and the seconds already taken. Within a stage the rest
        waits for that stage's start; a checkpoint taken at a stage's end restores the plugins now."""
        state, tensors = self._resume
        self.student.load_state_dict(tensors["student"])
        kept = state["result"]
        self.selection.restore(kept, tensors.get("best"))
        for key in RESULT_KEYS + ("early_stopped",):
            setattr(self.result, key, kept[key])
        self.logger.restore(state["logger_rows"])
        for name, saved in state.get("sources", {}).items():
            self.sources[name].load_state_dict(saved)
        if state["micro"] == 0:  # at a stage's boundary: the run's plugins (a stage's own start afresh)
            self.plugins.load_state_dict(state["plugins"], only=self.plugins.active(None))
        return state["stage"], kept["seconds"]

    def _restore_stage(self, objective, optimizer, scheduler, plugins) -> dict:
        """Continue from the very next micro-step: this stage's first, or a later one."""
        state, tensors = self._resume
        self._resume = None
        position = {"step": 0, "micro": 0, "running": {}, "metric": None, "epoch": None}
        if state["micro"]:
            objective.load_state_dict(tensors["objective"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            self.plugins.load_state_dict(state["plugins"], only=plugins)
            position.update(step=state["step"], micro=state["micro"], running=state["running"],
                            metric=state["metric"], epoch=(state["epoch_micro"], state["epoch_generator"]))
        self.accelerator.step = state["accelerator_step"]
        set_rng_state(state["rng"])
        return position
