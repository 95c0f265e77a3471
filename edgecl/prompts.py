"""The prompt a class name becomes before the text tower reads it: one template for the learner, the encoder, the
bundled backbone's bridge fit and export's evaluation prompts (a change here changes all of them together)."""

from __future__ import annotations

DEFAULT_PROMPT = "a photo of a {}."


def prompt_name(name: str) -> str:
    """Folder-style names read better in prompts: underscores and dashes become spaces."""
    return name.replace("_", " ").replace("-", " ").strip()


def prompt_for(name: str) -> str:
    return DEFAULT_PROMPT.format(prompt_name(name))
