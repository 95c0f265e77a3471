"""Commands that run for a while: the HTTP service, the benchmarks, the fleet simulation."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from edgecl.cli.base import AsJson, StateDir, handles_errors, print_json
from edgecl.cli.progress import ProgressBar
from edgecl.errors import EdgeclError


@handles_errors
def bench(
    suite: str = typer.Option(
        "quick",
        help="quick (about 2 min on 2 cores once embeddings are cached), default (3 seeds, sweeps), task-size "
        "(images per class x classes per task, and a budget sweep at 100 images per class), open-set (known vs "
        "unknown images: confidence, unknown, --labels) or methods (which default: every method on every cell of "
        "images per class, task shape and budget, class- and domain-incremental, beside full memory; about an hour).",
    ),
    out: Path = typer.Option(Path("bench-results"), help="Folder for results.json, report.md and PNG plots."),
    data_root: Path | None = typer.Option(None, help="Folder holding CIFAR-100 / DomainNet, when you have them."),
    download: bool = typer.Option(False, "--download", help="Fetch CIFAR-100 into --data-root (needs network)."),
    as_json: AsJson = False,
) -> None:
    """Continual-learning benchmark: all methods side by side at equal byte budgets (bundled backbone).

    Pick a suite with --suite; results.json, report.md and PNG plots go to --out.

    Examples:

        edgecl bench --suite quick --out results/
        edgecl bench --suite open-set --out benchmarks/results/open-set
    """
    from edgecl.bench.method_suite import METHOD_SUITES, method_markdown, run_method_suite
    from edgecl.bench.open_set import OPEN_SET_SUITES, run_open_set
    from edgecl.bench.open_set_report import open_set_markdown
    from edgecl.bench.size_suite import SIZE_SUITES, run_size_suite, size_markdown
    from edgecl.bench.suite import SUITES, markdown, run_suite

    named = {**{s: (run_size_suite, SIZE_SUITES[s], size_markdown) for s in SIZE_SUITES},
             **{s: (run_open_set, OPEN_SET_SUITES[s], open_set_markdown) for s in OPEN_SET_SUITES},
             **{s: (run_method_suite, METHOD_SUITES[s], method_markdown) for s in METHOD_SUITES}}  # fmt: skip
    if suite not in SUITES and suite not in named:
        raise EdgeclError(f"unknown suite {suite!r}; choose {', '.join([*SUITES, *named])}")
    with ProgressBar(not as_json) as bar:
        if suite in named:
            runner, config, render = named[suite]
            results = runner(config, out, suite, bar)
        else:
            results, render = run_suite(suite, out, data_root, download, bar), markdown
    if as_json:
        print_json(results)
        return
    typer.echo(render(results))
    typer.echo(f"wrote {out / 'results.json'}, {out / 'report.md'} and plots in {out}")


@handles_errors
def serve(
    state_dir: StateDir = None,
    host: str = typer.Option("127.0.0.1", help="Address to bind; another than loopback needs --token."),
    port: int = typer.Option(8130, min=0, max=65535, help="TCP port (0: any free one; the start-up line says)."),
    token: str | None = typer.Option(
        None,
        envvar="EDGECL_TOKEN",
        help="Every request then needs `Authorization: Bearer TOKEN` (also from $EDGECL_TOKEN).",
    ),
    max_upload: str = typer.Option("20MB", "--max-upload", help="Largest request body; bigger ones get a 413."),
    as_json: AsJson = False,
) -> None:
    """Serve classify, learn, forget and status over HTTP from one loaded state (FastAPI + uvicorn).

    Endpoints: GET /v2/health/live, GET /v2/health/ready (503 until something is learned), POST /v1/classify
    (multipart `image`, form `top_k`, `labels`, `min_confidence`), POST /v1/vision/custom/{model} (the DeepStack /
    CodeProject.AI shape Frigate and Home Assistant use), POST /v1/learn (`image` files + `label`), GET /v1/status,
    DELETE /v1/classes/{name}, GET /metrics. A learn by the CLI in another shell is served within a few seconds.

    Examples:

        edgecl serve
        curl -F image=@cat.jpg http://127.0.0.1:8130/v1/classify
        EDGECL_TOKEN=secret edgecl serve --host 0.0.0.0 --port 8130
    """
    from edgecl.serve import run
    from edgecl.units import parse_bytes

    def started(address: str, state: Any) -> None:
        if as_json:
            typer.echo(json.dumps({"address": address, "state_dir": str(state.root), "snapshot": state.snapshot,
                                   "ready": state.ready, "auth": bool(token)}))  # fmt: skip
        else:
            typer.echo(f"edgecl serving {state.root} at {address}" + ("" if state.ready else " (nothing learned yet)"))
        sys.stdout.flush()

    run(state_dir, host, port, token, parse_bytes(max_upload), started)


fleet_app = typer.Typer(help="Fleet learning on Flower: devices share what they learned, never their images.",
                        no_args_is_help=True, rich_markup_mode="markdown")  # fmt: skip


@handles_errors
def fleet_simulate(
    devices: int = typer.Option(3, help="Simulated devices, each with its own state directory."),
    rounds: int = typer.Option(3, help="Federation rounds."),
    stream: str = typer.Option("fashion-mnist", help="fashion-mnist or mnist (offline)."),
    split: str = typer.Option("disjoint", help="disjoint (each class on one device) or dirichlet (shares per class)."),
    budget: str = typer.Option("64KB", help="Each device's replay-memory budget."),
    train_per_class: int = typer.Option(100, min=1, help="Training images per class, dealt out to the devices."),
    test_per_class: int = typer.Option(100, min=1, help="Test images per class."),
    seed: int = typer.Option(0, min=0, help="Seed of the split and of learning (device k learns with seed + k)."),
    keep: Path | None = typer.Option(None, help="Keep the devices' state directories here (default: temporary)."),
    as_json: AsJson = False,
) -> None:
    """Each device learns its part with `learn`'s code; then the rounds run on Flower's simulation engine.

    One machine plays every device (each with its own state directory) and the server.

    Examples:

        edgecl fleet simulate --devices 2 --rounds 1 --train-per-class 20 --test-per-class 20
        edgecl fleet simulate --devices 4 --split dirichlet --json
    """
    from edgecl.fleet.simulate import FleetSpec, simulate

    spec = FleetSpec(devices, rounds, stream, split, budget, train_per_class, test_per_class, seed)
    with ProgressBar(not as_json) as bar:
        result = simulate(spec, keep, bar)
    if as_json:
        print_json(result)
        return
    for d in result["devices"]:
        typer.echo(f"device {d['id']} (seed {d['seed']}): {len(d['local_classes'])} own classes; all classes "
                   f"{100 * d['acc_all_before']:.1f}% -> {100 * d['acc_all_after']:.1f}% (head alone "
                   f"{100 * d['acc_head_before']:.1f}% -> {100 * d['acc_head_after']:.1f}%), own "
                   f"{100 * d['acc_local_after']:.1f}%; memory {d['memory_bytes']} of "
                   f"{d['budget_bytes']} B")  # fmt: skip
    typer.echo(f"{result['rounds']} rounds, {result['bytes_up_per_round']} B up and "
               f"{result['bytes_down_per_round']} B down per round, {result['seconds']:.0f} s")  # fmt: skip
