"""The operations behind `edgecl learn / classify / status / forget / memory / rollback`: each returns the report the
CLI prints (learn and status as typed reports, edgecl.reports, whose to_json() is the --json output). Progress goes
through a callback; nothing here prints. One module per kind of operation: learning, answering (classify, status),
upkeep (forget, memory, rollback); encoding (RAM-planned batches) and common (loading, checks) serve them."""

from __future__ import annotations

from edgecl.commands.answering import answer_files, classify, status
from edgecl.commands.common import Progress, check_same_model, open_encoder, quiet, saved_runtime, state_min_confidence
from edgecl.commands.encoding import encode_files
from edgecl.commands.learning import LearnOptions, learn
from edgecl.commands.upkeep import change_memory, forget, rollback

__all__ = ["LearnOptions", "Progress", "answer_files", "change_memory", "check_same_model", "classify",
           "encode_files", "forget", "learn", "open_encoder", "quiet", "rollback", "saved_runtime",
           "state_min_confidence", "status"]  # fmt: skip
