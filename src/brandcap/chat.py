"""Rendering samples through the processor's chat template, identically for training and evaluation.

The reference study's lesson: a prompt format that differs between training and evaluation
can drive accuracy to zero. Both sides call `prompt_text`, so they cannot drift.
"""

from __future__ import annotations

from typing import Any


def user_messages(instruction: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": instruction}]}]


def prompt_text(processor, instruction: str) -> str:
    """The rendered user turn plus the assistant header: what the model sees before answering."""
    return processor.apply_chat_template(user_messages(instruction), add_generation_prompt=True, tokenize=False)


def answer_text(processor, caption: str) -> str:
    """The assistant answer followed by the end-of-turn token the model must learn to emit."""
    return caption + processor.tokenizer.eos_token
