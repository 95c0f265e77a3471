"""The Flower apps (Message API): one ClientApp per device, one ServerApp for the fleet.

A round: the server sends every connected device a `train` message (carrying the fleet's result of the previous
round, if any); a device takes it (edgecl.fleet.device.apply_fleet, an atomic commit) and answers with what it
learned itself (local_update). The server aggregates the answers (edgecl.fleet.aggregate) and, after the last
round, sends the result once more to be taken. A device that does not answer within the round's timeout is left
out of that round; one with another backbone is refused by name.

Settings come from the run config (`flwr run`, deployment) or from `make_server_app` (simulation):
rounds, min-nodes (devices to wait for before the first round), round-timeout (s), state-root (simulation:
device k keeps its state in <state-root>/device-<k>; a SuperNode names its own with --node-config "state-dir=...").
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from edgecl.errors import EdgeclError
from edgecl.fleet.aggregate import FleetMismatchError, Update, aggregate, check_compatible

# A device process (a Ray actor, a SuperNode's ClientApp) has no CLI to filter third-party warnings: bitsandbytes'
# note about an optional kernel package would print on every device in every round.
logging.getLogger("bitsandbytes").setLevel(logging.ERROR)

DEFAULTS: dict[str, Any] = {"rounds": 3, "min-nodes": 2, "round-timeout": 600.0, "state-root": ""}


# ---- the wire format ---------------------------------------------------------------------------------------
def to_records(update: Update, config: dict[str, Any] | None = None) -> RecordDict:
    """An Update as Flower records: three ArrayRecords (LoRA by peft name, text and means by class) + a config."""
    meta = {"backbone": update.backbone, "dim": update.dim, "samples": update.samples,
            "class_counts": json.dumps(update.class_counts),
            "mean_counts": json.dumps([[c, d, n] for (c, d), (_, n) in update.means.items()])}  # fmt: skip
    return RecordDict({
        "lora": _arrays(update.lora), "text": _arrays(update.text),
        "means": _arrays({c: m for (c, _), (m, _) in update.means.items()}),
        "update": ConfigRecord(meta), "config": ConfigRecord(config or {}),
    })  # fmt: skip


def from_records(content: RecordDict) -> Update:
    meta = content["update"]
    means = content["means"]
    mean_counts = {(c, d): int(n) for c, d, n in json.loads(str(meta["mean_counts"]))}
    return Update(str(meta["backbone"]), int(meta["dim"]), int(meta["samples"]), _numpy(content["lora"]),
                  {c: int(n) for c, n in json.loads(str(meta["class_counts"])).items()}, _numpy(content["text"]),
                  {(c, d): (means[c].numpy(), n) for (c, d), n in mean_counts.items()})  # fmt: skip


def _arrays(arrays: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord(array_dict={k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()})


def _numpy(record: Any) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in record.items()}


# ---- the device ----------------------------------------------------------------------------------------------
client_app = ClientApp()


@client_app.train()
def device_round(msg: Message, context: Context) -> Message:
    """Take the fleet's result if one came, then answer with this device's own learning (or, in the final
    message, with its memory figures only). An error is answered as {"error": "..."}, never a crash."""
    from edgecl.fleet.device import apply_fleet, local_update

    config = msg.content["config"]
    state_dir = device_state_dir(context, str(config.get("state-root", "")))
    try:
        applied = apply_fleet(state_dir, from_records(msg.content)) if "update" in msg.content else None
        if bool(config.get("final", False)):
            assert applied is not None
            return Message(RecordDict({"config": ConfigRecord(_figures(applied, state_dir))}), reply_to=msg)
        return Message(to_records(local_update(state_dir), {"state-dir": state_dir}), reply_to=msg)
    except EdgeclError as exc:
        return Message(RecordDict({"config": ConfigRecord({"error": str(exc), "state-dir": state_dir})}), reply_to=msg)


def device_state_dir(context: Context, state_root: str) -> str:
    """A SuperNode's --node-config state-dir, else <state-root>/device-<partition-id> (simulation)."""
    if "state-dir" in context.node_config:
        return str(context.node_config["state-dir"])
    if not state_root:
        raise EdgeclError("this device has no state directory: start it with --node-config \"state-dir='...'\"")
    return f"{state_root}/device-{context.node_config['partition-id']}"


def _figures(applied: dict[str, Any], state_dir: str) -> dict[str, Any]:
    return {"state-dir": state_dir, "classes": json.dumps(applied["classes"]),
            "memory_bytes": applied["memory_bytes"], "budget_bytes": applied["budget_bytes"]}  # fmt: skip


# ---- the server ------------------------------------------------------------------------------------------------
def make_server_app(settings: dict[str, Any] | None = None, sink: Callable[[dict[str, Any]], None] | None = None,
                    ) -> ServerApp:  # fmt: skip
    """A ServerApp with these settings over the run config's; `sink` receives the run's summary."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        cfg = {**DEFAULTS, **dict(context.run_config), **(settings or {})}
        summary = run_rounds(grid, cfg)
        if sink is not None:
            sink(summary)

    return app


server_app = make_server_app()


def run_rounds(grid: Grid, cfg: dict[str, Any]) -> dict[str, Any]:
    """Wait for min-nodes devices, run the rounds, send the final result; return what happened."""
    nodes = _wait_for_nodes(grid, int(cfg["min-nodes"]), float(cfg["round-timeout"]))
    fleet: Update | None = None
    rounds: list[dict[str, Any]] = []
    for r in range(int(cfg["rounds"])):
        replies = _exchange(grid, nodes, fleet, cfg, final=False)
        updates, refused = _usable(replies)
        up = sum(u.nbytes() for u in updates)
        if updates:
            fleet = aggregate(updates)
        down = fleet.nbytes() * len(nodes) if fleet else 0
        rounds.append({"round": r + 1, "answered": len(updates), "refused": refused, "bytes_up": up,
                       "bytes_down": down})  # fmt: skip
    final = _exchange(grid, nodes, fleet, cfg, final=True) if fleet else {}
    devices = [{"node": n, **dict(reply["config"])} for n, reply in final.items()]
    return {"rounds": rounds, "devices": devices, "classes": list(fleet.class_counts) if fleet else []}


def _usable(replies: dict[int, RecordDict]) -> tuple[list[Update], list[dict[str, Any]]]:
    """The updates that agree with the fleet's backbone (the one most devices use), and the refusals with reasons."""
    updates, refused = {}, []
    for node, reply in replies.items():
        if "update" in reply:
            updates[node] = from_records(reply)
        else:
            refused.append({"node": node, "reason": str(reply["config"].get("error", "no answer"))})
    kinds = [(u.backbone, u.dim) for u in updates.values()]
    if not kinds:
        return [], refused
    backbone, dim = max(set(kinds), key=lambda k: (kinds.count(k), -kinds.index(k)))
    reference = next(u for u in updates.values() if (u.backbone, u.dim) == (backbone, dim))
    usable = []
    for node, update in updates.items():
        try:
            check_compatible(reference, update)
            usable.append(update)
        except FleetMismatchError as exc:
            refused.append({"node": node, "reason": str(exc)})
    return usable, refused


def _wait_for_nodes(grid: Grid, minimum: int, timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= minimum or time.monotonic() > deadline:
            return nodes
        time.sleep(0.5)


def _exchange(grid: Grid, nodes: list[int], fleet: Update | None, cfg: dict[str, Any],
              final: bool) -> dict[int, RecordDict]:  # fmt: skip
    """Send every node the fleet's update (or only the config); the replies that came back in time, by node."""
    config = {"state-root": str(cfg["state-root"]), "final": final}
    content = to_records(fleet, config) if fleet else RecordDict({"config": ConfigRecord(config)})
    messages = [Message(content.copy() if hasattr(content, "copy") else content, dst_node_id=n, message_type="train")
                for n in nodes]  # fmt: skip
    replies = grid.send_and_receive(messages, timeout=float(cfg["round-timeout"]))
    return {r.metadata.src_node_id: r.content for r in replies if not r.has_error()}
