"""The Trainer's optimizer steps shown through `brandcap.running.progress`, for every run on the Trainer
(fine-tuning and the tiny model's pretraining): a bar on a terminal, a line every few seconds in a log.

    trainer = Trainer(..., args=TrainingArguments(..., disable_tqdm=True),
                      callbacks=[StepProgressCallback("train freeze_llm", log)])
    trainer.remove_callback(PrinterCallback)
"""

from __future__ import annotations

import logging

from transformers import TrainerCallback

from brandcap.running.progress import Progress


class StepProgressCallback(TrainerCallback):
    """Optimizer steps through brandcap.running.progress. It replaces the Trainer's own bar (`disable_tqdm=True`)
    and, once the caller removes `PrinterCallback`, its printed log dicts."""

    def __init__(self, desc: str, logger: logging.Logger):
        self.desc = desc
        self.logger = logger
        self.bar: Progress | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.bar = Progress(state.max_steps, self.desc, unit="step", initial=state.global_step, logger=self.logger)
        return control

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.done)
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        return control
