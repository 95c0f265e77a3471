"""The learned state as one immutable value (`LearnedState`), pure-numpy scoring and answers over it (`scoring`), and
its files (`files`). Learning (edgecl.learner) builds a new value and replaces the old one in one assignment, so a
classify in another thread or request never sees half a learn. numpy only: classification never imports torch."""

from edgecl.learned.value import LearnedState, Resume

__all__ = ["LearnedState", "Resume"]
