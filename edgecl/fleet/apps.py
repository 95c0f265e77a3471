"""The Flower apps (Message API): one ClientApp per device, one ServerApp for the fleet.

A round: the server sends every connected device a `train` message (carrying that device's share of the previous
round's result, if any); a device takes it (edgecl.fleet.device.apply_fleet, an atomic commit) and answers with
what it learned itself (local_update). The server aggregates the answers (edgecl.fleet.aggregate) and, after the
last round, sends each device its share once more to be taken. A device's share leaves out its own contribution
(the others' means, the others' part of the head average and its own weight), so nothing is subtracted on the
device. A device that does not answer within the round's timeout is left out of that round; one with another
backbone is refused by name; any failure on a device is answered as {"error": "..."} with the reason.

Settings come from the run config (`flwr run`, deployment) or from `make_server_app` (simulation):
rounds, min-nodes (devices to wait for before the first round: the run fails with a message when fewer have
connected within round-timeout), round-timeout (s), state-root (simulation: device k keeps its state in
<state-root>/device-<k>; a SuperNode names its own with --node-config "state-dir=..."), result-file (where the
ServerApp writes the run's summary as JSON; "" writes none).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from edgecl.atomic import atomic_write_bytes
from edgecl.errors import EdgeclError
from edgecl.fleet.aggregate import FleetMismatchError, Update, aggregate, check_compatible, share_for
from edgecl.learn.merged import MergedHead

# A device process (a Ray actor, a SuperNode's ClientApp) has no CLI to filter third-party warnings: bitsandbytes'
# note about an optional kernel package would print on every device in every round.
logging.getLogger("bitsandbytes").setLevel(logging.ERROR)

DEFAULTS: dict[str, Any] = {"rounds": 3, "min-nodes": 2, "round-timeout": 600.0, "state-root": "", "result-file": ""}


# ---- the wire format ---------------------------------------------------------------------------------------
def to_records(update: Update, config: dict[str, Any] | None = None) -> RecordDict:
    """An Update as Flower records: three ArrayRecords (the head's down and up, text and means by class) + a
    config."""
    meta = {"backbone": update.backbone, "dim": update.dim, "samples": update.samples,
            "own_weight": update.own_weight, "class_counts": json.dumps(update.class_counts),
            "mean_counts": json.dumps([[c, d, n] for (c, d), (_, n) in update.means.items()])}  # fmt: skip
    head = {"down": update.head.down, "up": update.head.up} if update.head is not None else {}
    return RecordDict({
        "head": _arrays(head), "text": _arrays(update.text),
        "means": _arrays({c: m for (c, _), (m, _) in update.means.items()}),
        "update": ConfigRecord(meta), "config": ConfigRecord(config or {}),
    })  # fmt: skip


def from_records(content: RecordDict) -> Update:
    meta = content["update"]
    means = content["means"]
    mean_counts = {(c, d): int(n) for c, d, n in json.loads(str(meta["mean_counts"]))}
    head = _numpy(content["head"])
    return Update(str(meta["backbone"]), int(meta["dim"]), int(meta["samples"]),
                  MergedHead(head["down"], head["up"]) if head else None,
                  {c: int(n) for c, n in json.loads(str(meta["class_counts"])).items()}, _numpy(content["text"]),
                  {(c, d): (means[c].numpy(), n) for (c, d), n in mean_counts.items()},
                  float(meta.get("own_weight", 0.0)))  # fmt: skip


def _arrays(arrays: dict[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord(array_dict={k: Array(np.ascontiguousarray(v)) for k, v in arrays.items()})


def _numpy(record: Any) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in record.items()}


# ---- the device ----------------------------------------------------------------------------------------------
client_app = ClientApp()


@client_app.train()
def device_round(msg: Message, context: Context) -> Message:
    """Take this device's share of the fleet's result if one came, then answer with this device's own learning (or,
    in the final message, with its memory figures only). Any failure is answered as {"error": "..."} with the
    reason, never a crash (an unexpected one names its type)."""
    from edgecl.fleet.device import apply_fleet, local_update

    config = msg.content["config"]
    state_dir = str(config.get("state-root", ""))
    try:
        state_dir = device_state_dir(context, state_dir)
        applied = None
        if "update" in msg.content:
            applied = apply_fleet(state_dir, from_records(msg.content), round_id=int(config.get("round", 0)),
                                  run_id=str(config.get("run", "")))  # fmt: skip
        if bool(config.get("final", False)):
            if applied is None:
                raise EdgeclError("the final message carried no fleet result")
            return Message(RecordDict({"config": ConfigRecord(_figures(applied, state_dir))}), reply_to=msg)
        return Message(to_records(local_update(state_dir), {"state-dir": state_dir}), reply_to=msg)
    except Exception as exc:  # noqa: BLE001 - every failure becomes the reply's reason
        reason = str(exc) if isinstance(exc, EdgeclError) else f"{type(exc).__name__}: {exc}"
        return Message(RecordDict({"config": ConfigRecord({"error": reason, "state-dir": state_dir})}), reply_to=msg)


def device_state_dir(context: Context, state_root: str) -> str:
    """A SuperNode's --node-config state-dir, else <state-root>/device-<partition-id> (simulation)."""
    if "state-dir" in context.node_config:
        return str(context.node_config["state-dir"])
    if not state_root:
        raise EdgeclError("this device has no state directory: start it with --node-config \"state-dir='...'\"")
    return f"{state_root}/device-{context.node_config['partition-id']}"


def _figures(applied: dict[str, Any], state_dir: str) -> dict[str, Any]:
    return {"state-dir": state_dir, "classes": json.dumps(applied["classes"]),
            "refused_classes": json.dumps(applied["refused_classes"]),
            "memory_bytes": applied["memory_bytes"], "budget_bytes": applied["budget_bytes"]}  # fmt: skip


# ---- the server ------------------------------------------------------------------------------------------------
def make_server_app(settings: dict[str, Any] | None = None, sink: Callable[[dict[str, Any]], None] | None = None,
                    ) -> ServerApp:  # fmt: skip
    """A ServerApp with these settings over the run config's; `sink` receives the run's summary."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        cfg = {**DEFAULTS, **dict(context.run_config), **(settings or {})}
        try:
            summary = run_rounds(grid, cfg)
        except EdgeclError as exc:
            summary = {"error": str(exc)}
            logging.getLogger("edgecl.fleet").error("fleet run failed: %s", exc)
        if sink is not None:
            sink(summary)
        if cfg.get("result-file"):  # how the summary reaches a caller in another process (`flwr run`)
            atomic_write_bytes(Path(str(cfg["result-file"])), json.dumps(summary).encode())

    return app


server_app = make_server_app()


def run_rounds(grid: Grid, cfg: dict[str, Any]) -> dict[str, Any]:
    """Wait for min-nodes devices, run the rounds, send the final shares; return what happened."""
    if int(cfg["min-nodes"]) < 1:
        raise EdgeclError(f"min-nodes must be at least 1, got {cfg['min-nodes']}")
    nodes = _wait_for_nodes(grid, int(cfg["min-nodes"]), float(cfg["round-timeout"]))
    cfg = {**cfg, "run": uuid.uuid4().hex}  # with the round, names each result: a device takes one only once
    fleet: Update | None = None
    shares: dict[int, Update] = {}
    rounds: list[dict[str, Any]] = []
    for r in range(int(cfg["rounds"])):
        replies = _exchange(grid, nodes, shares, cfg, final=False, round_id=r)
        shares = {}  # sent: a round without answers sends nothing to take, not the same result again
        usable, refused = _usable(replies)
        updates = list(usable.values())
        up = sum(u.nbytes() for u in updates)
        if updates:
            fleet = aggregate(updates)
            shares = _shares(nodes, usable, fleet)
        down = sum(s.nbytes() for s in shares.values())
        rounds.append({"round": r + 1, "answered": len(updates), "refused": refused, "bytes_up": up,
                       "bytes_down": down})  # fmt: skip
    final = _exchange(grid, nodes, shares, cfg, final=True, round_id=int(cfg["rounds"])) if shares else {}
    devices = [{"node": n, **dict(reply["config"])} for n, reply in final.items()]
    return {"rounds": rounds, "devices": devices, "classes": list(fleet.class_counts) if fleet else []}


def _shares(nodes: list[int], usable: dict[int, Update], fleet: Update) -> dict[int, Update]:
    """Each node's share: a node that answered gets the others' part and its own weight; one that did not (or was
    refused) keeps its own head (weight 1, nothing added) and takes the classes and means."""
    order = list(usable)
    updates = [usable[n] for n in order]
    left_out = replace(fleet, head=None, own_weight=1.0)
    return {n: share_for(updates, order.index(n)) if n in usable else left_out for n in nodes}


def _usable(replies: dict[int, RecordDict]) -> tuple[dict[int, Update], list[dict[str, Any]]]:
    """The updates (by node) that agree with the fleet's backbone (the one most devices use), and the refusals with
    reasons."""
    updates, refused = {}, []
    for node, reply in replies.items():
        try:
            if "update" not in reply:
                raise EdgeclError(str(reply["config"].get("error", "no answer")))
            updates[node] = from_records(reply)
        except (EdgeclError, KeyError, TypeError, ValueError) as exc:  # an error reply, or one edgecl cannot read
            reason = str(exc) if isinstance(exc, EdgeclError) else f"unreadable update ({type(exc).__name__}: {exc})"
            refused.append({"node": node, "reason": reason})
    kinds = [(u.backbone, u.dim) for u in updates.values()]
    if not kinds:
        return {}, refused
    backbone, dim = max(set(kinds), key=lambda k: (kinds.count(k), -kinds.index(k)))
    reference = next(u for u in updates.values() if (u.backbone, u.dim) == (backbone, dim))
    usable = {}
    for node, update in updates.items():
        try:
            check_compatible(reference, update)
            usable[node] = update
        except FleetMismatchError as exc:
            refused.append({"node": node, "reason": str(exc)})
    return usable, refused


def _wait_for_nodes(grid: Grid, minimum: int, timeout_s: float) -> list[int]:
    """The connected nodes once there are at least `minimum`; fails with a message after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= max(minimum, 1):
            return nodes
        if time.monotonic() > deadline:
            raise EdgeclError(f"only {len(nodes)} of min-nodes={minimum} devices connected within {timeout_s:.0f} s; "
                              "start more SuperNodes or lower min-nodes")  # fmt: skip
        time.sleep(0.5)


def _exchange(grid: Grid, nodes: list[int], shares: dict[int, Update], cfg: dict[str, Any], final: bool,
              round_id: int) -> dict[int, RecordDict]:  # fmt: skip
    """Send every node its share of the fleet's result (or only the config, before the first result); the replies
    that came back in time, by node."""
    config = {"state-root": str(cfg["state-root"]), "final": final, "round": round_id, "run": str(cfg.get("run", ""))}
    messages = [Message(to_records(shares[n], config) if n in shares else RecordDict({"config": ConfigRecord(config)}),
                        dst_node_id=n, message_type="train") for n in nodes]  # fmt: skip
    replies = grid.send_and_receive(messages, timeout=float(cfg["round-timeout"]))
    return {r.metadata.src_node_id: r.content for r in replies if not r.has_error()}
