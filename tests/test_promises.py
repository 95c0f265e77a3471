"""README promises driven through the CLI (issue 25): one class per name across tasks, hidden and system folders
never learned, a photo learned once, a way out when a fixed codec's groups outgrow the budget, no folder left by a
failed first learn, and the learner-level rules behind them."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgecl.learn.prototypes import DEFAULT_WEIGHT
from edgecl.learner import Learner, LearnerConfig
from edgecl.memory import MemoryConfig
from edgecl.names import class_key, joined_names, known_as
from edgecl.state import read_state
from tests.test_cli_learn import invoke, write_task
from tests.test_learner import DIM, clustered

BUNDLED = ("--backbone", "bundled", "--method", "ncm")  # ncm: no training, so these CLI checks stay quick


def _learn(task: Path, state: Path, *flags: str) -> dict:
    code, out, err = invoke("learn", "--task-dir", str(task), "--state-dir", str(state), "--json", *flags)
    assert code == 0, err
    return json.loads(out)


def test_one_name_rule() -> None:
    nfd = unicodedata.normalize("NFD", "Café")
    assert class_key(nfd) == class_key("café") == class_key(" CAFÉ ")
    assert class_key("Ankle Boot") == class_key("ankle_boot") == class_key("ankle-boot") == "ankle boot"
    assert joined_names(["Bag", " bag ", "Sneaker"], ["bag"]) == {"Bag": "bag", " bag ": "bag", "Sneaker": "Sneaker"}
    # a state from before the rule may hold both spellings: the exact one wins
    assert joined_names(["cat", "CAT"], ["Cat", "cat"]) == {"cat": "cat", "CAT": "Cat"}
    assert known_as("cat", ["Cat", "cat"]) == "cat" and known_as("Ankle-Boot", ["ankle_boot"]) == "ankle_boot"


def test_the_fleet_keeps_one_class_per_name_across_devices() -> None:
    from edgecl.fleet.aggregate import Update, aggregate

    def update(name: str, mean: float) -> Update:
        row = np.full(4, mean, np.float32)
        return Update("bundled", 4, 3, None, {name: 3}, {name: row}, {(name, ""): (row, 3)})

    fleet = aggregate([update("Cat", 1.0), update("cat", 3.0), update("dog", 5.0)])
    assert fleet.class_counts == {"Cat": 6, "dog": 3} and set(fleet.text) == {"Cat", "dog"}
    np.testing.assert_allclose(fleet.means[("Cat", "")][0], 2.0)


def test_a_class_is_one_class_whatever_its_spelling_across_tasks(tmp_path: Path, bundled_export: Path) -> None:
    state = tmp_path / "state"
    _learn(write_task(tmp_path / "t1", {"bag": 8, "ankle_boot": 9}, n=4), state, "--budget", "64KB", *BUNDLED)
    nfd = unicodedata.normalize("NFD", "Café")
    report = _learn(write_task(tmp_path / "t2", {"Bag": 8, "Ankle Boot": 9, nfd: 0}, n=4, offset=10), state)
    assert report["new_classes"] == [unicodedata.normalize("NFC", nfd)]
    assert report["classes"] == ["ankle_boot", "bag", "Café"]
    assert report["joined_classes"] == {"Ankle Boot": "ankle_boot", "Bag": "bag"}
    code, out, _ = invoke("status", "--json", "--state-dir", str(state))
    assert json.loads(out)["memory"]["per_class"] == {"ankle_boot": 8, "bag": 8, "Café": 4}
    image = str(tmp_path / "t1" / "bag" / "0.png")
    code, out, err = invoke("classify", image, "--labels", " Bag , BAG,cat", "--top-k", "9", "--json",
                            "--state-dir", str(state))  # fmt: skip
    assert code == 0, err
    labels = [p["label"] for p in json.loads(out)[0]["predictions"]]
    assert sorted(labels) == ["Café", "ankle_boot", "bag", "cat"]  # " Bag " and "BAG" are the learned bag
    code, out, err = invoke("forget", "Ankle-Boot", "--json", "--state-dir", str(state))
    assert code == 0 and json.loads(out)["forgotten"] == "ankle_boot", err
    assert json.loads(out)["classes"] == ["bag", "Café"]


def test_hidden_and_system_folders_are_never_classes_or_samples(tmp_path: Path, bundled_export: Path) -> None:
    task = write_task(tmp_path / "t", {"bag": 8, "coat": 4, ".thumbnails": 7, "__MACOSX": 9}, n=3)
    write_task(task / "bag", {"@eaDir": 9, ".git": 7}, n=2)
    (task / "coat" / "._0.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    Image.new("RGB", (8, 8)).save(task / "coat" / ".hidden.png")
    report = _learn(task, tmp_path / "state", "--budget", "64KB", *BUNDLED)
    assert report["classes"] == ["bag", "coat"] and report["samples_stored"] == 6
    assert sorted(Path(s["path"]).name for s in report["skipped"]) == [".thumbnails", "__MACOSX"]
    assert {s["reason"] for s in report["skipped"]} == {"hidden or system folder, not a class"}


def test_the_same_photos_are_learned_once(tmp_path: Path, bundled_export: Path) -> None:
    state = tmp_path / "state"
    task = write_task(tmp_path / "t", {"bag": 8, "coat": 4}, n=5)
    first = _learn(task, state, "--budget", "64KB", *BUNDLED)
    assert first["samples_learned"] == 10 and first["already_learned"] == 0
    pointer = (state / "edgecl-state.json").read_bytes()
    again = _learn(task, state)
    assert again["samples_learned"] == 0 and again["already_learned"] == 10 and again["samples_stored"] == 10
    assert (state / "edgecl-state.json").read_bytes() == pointer  # nothing committed
    code, out, _ = invoke("learn", "--task-dir", str(task), "--state-dir", str(state))
    assert code == 0 and "nothing new to learn: 10 photos were learned before" in out
    (task / "bag" / "0.png").rename(task / "bag" / "copy of 0.png")  # renamed: the same photo
    write_task(task, {"coat": 4}, n=2, offset=20)  # overwrites coat/0.png and coat/1.png with new photos
    more = _learn(task, state)
    assert more["samples_learned"] == 2 and more["already_learned"] == 8 and more["samples_stored"] == 12
    domain = _learn(task, state, "--domain", "night")  # the same photos in a new domain are new there
    assert domain["samples_learned"] == 10 and domain["already_learned"] == 0


def test_a_fixed_codec_that_outgrows_its_budget_has_a_way_out(tmp_path: Path, bundled_export: Path) -> None:
    state = tmp_path / "state"
    _learn(write_task(tmp_path / "t1", {"bag": 8, "coat": 4}, n=3), state, "--budget", "12KB", "--codec", "fp16",
           *BUNDLED)  # fmt: skip
    more = write_task(tmp_path / "t2", {"sneaker": 7, "trouser": 1, "dress": 3}, n=3)
    code, _, err = invoke("learn", "--task-dir", str(more), "--state-dir", str(state))
    assert code == 2 and "edgecl memory --budget" in err and len(err.strip().splitlines()) == 1, err
    code, out, err = invoke("memory", "--codec", "int4", "--json", "--state-dir", str(state))
    assert code == 0, err
    changed = json.loads(out)
    assert changed["before"]["codec"] == "fp16" and changed["after"]["codec"] == "int4"
    assert changed["after"]["samples"] == changed["before"]["samples"] == 4  # fp16 at 1280 dims: 2 a class in 12 KB
    report = _learn(more, state)
    assert report["classes"] == ["bag", "coat", "dress", "sneaker", "trouser"] and report["codec"] == "int4"
    code, _, err = invoke("memory", "--budget", "1KB", "--state-dir", str(state))
    assert code == 2 and "minimum is" in err and len(err.strip().splitlines()) == 1
    code, _, err = invoke("memory", "--state-dir", str(state))
    assert code == 2 and "--budget" in err
    code, out, err = invoke("memory", "--budget", "64KB", "--codec", "fp16", "--json", "--state-dir", str(state))
    after = json.loads(out)["after"]
    assert code == 0 and after["samples"] == report["samples_stored"] and after["codec"] == "fp16", err


def test_a_failed_first_learn_leaves_no_folder_and_a_change_after_rollback_is_not_marked(
    tmp_path: Path, bundled_export: Path
) -> None:
    state = tmp_path / "new-state"
    code, _, err = invoke("learn", "--task-dir", str(write_task(tmp_path / "t", {"bag": 8}, n=2)), "--budget", "100B",
                          "--state-dir", str(tmp_path / "deep" / "er" / "s"), *BUNDLED)  # fmt: skip
    assert code == 2 and not (tmp_path / "deep").exists(), err  # the folders it made, parents too, are gone
    _learn(tmp_path / "t", state, "--budget", "64KB", *BUNDLED)
    _learn(write_task(tmp_path / "t2", {"coat": 4}, n=2), state)
    assert invoke("rollback", "--state-dir", str(state))[0] == 0
    assert "rolled_back" in (read_state(state) or pytest.fail()).meta
    _learn(write_task(tmp_path / "t3", {"dress": 3}, n=2), state)
    assert "rolled_back" not in (read_state(state) or pytest.fail()).meta


def test_new_classes_under_a_new_domain_keep_the_class_incremental_weight() -> None:
    x, y, text = clustered(4, 20, 0)
    learner = Learner(LearnerConfig(method="ncm", memory=MemoryConfig(64_000)), DIM)
    names = [f"c{c}" for c in y]
    first, second = np.isin(y, [0, 1]), np.isin(y, [2, 3])
    texts = {f"c{c}": text[c] for c in range(4)}
    learner.learn_embeddings(x[first], [n for n, f in zip(names, first, strict=True) if f], text=texts)
    learner.learn_embeddings(x[second], [n for n, s in zip(names, second, strict=True) if s], "sketch", text=texts)
    assert learner.state.weight_in_use == learner.state.prototype_weight == DEFAULT_WEIGHT
    learner.learn_embeddings(x[first], [n for n, f in zip(names, first, strict=True) if f], "sketch", text=texts)
    assert learner.state.weight_in_use == learner.config.prototypes.domain_weight  # c0 and c1 in a second domain


def test_learn_images_skips_an_unreadable_image_as_the_cli_does(tmp_path: Path, bundled_export: Path) -> None:
    from edgecl.encoder import Encoder

    task = write_task(tmp_path / "t", {"bag": 8, "coat": 4}, n=3)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    images = [*sorted((task / "bag").iterdir()), broken, *sorted((task / "coat").iterdir())]
    learner = Learner(LearnerConfig(method="ncm", memory=MemoryConfig(64_000)), 0, Encoder(bundled_export))
    learner = Learner(learner.config, learner.encoder.embed_dim, learner.encoder)
    result = learner.learn_images(images, ["bag"] * 4 + ["coat"] * 3)
    assert result.samples == 6 and [Path(s["path"]) for s in result.skipped] == [broken]
    assert learner.memory.stats().per_class == {"bag": 3, "coat": 3}


def test_training_tells_its_steps_as_it_goes() -> None:
    x, y, text = clustered(3, 20, 1)
    learner = Learner(LearnerConfig(method="er_cb", memory=MemoryConfig(64_000)), DIM)
    told: list[tuple[int, int]] = []
    result = learner.learn_embeddings(x, [f"c{c}" for c in y], text={f"c{c}": text[c] for c in range(3)},
                                      on_train_step=lambda done, steps: told.append((done, steps)))  # fmt: skip
    steps = told[-1][1]
    assert result.training is not None and told[-1] == (steps, steps) and len(told) >= 10
    assert [d for d, _ in told] == sorted(d for d, _ in told) and {s for _, s in told} == {steps}


def test_auto_does_not_count_another_models_cached_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline with another open_clip model in the Hugging Face cache, the profile's CLIP cannot be had: `auto`
    must fall back to bundled rather than fail on the first learn."""
    from huggingface_hub import constants

    from edgecl.backbones import parse_backbone_id
    from edgecl.backbones.openclip import clip_obtainable

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    other = tmp_path / "hub" / "models--timm--vit_base_patch16_clip_224.openai" / "snapshots" / "abc"
    other.mkdir(parents=True)
    (other / "open_clip_model.safetensors").write_bytes(b"weights of another model")
    ref = parse_backbone_id("openclip:ViT-B-32:laion2b_s34b_b79k")
    assert not clip_obtainable(ref)
    mine = tmp_path / "hub" / "models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K" / "snapshots" / "def"
    mine.mkdir(parents=True)
    (mine / "open_clip_model.safetensors").write_bytes(b"its own weights")
    (mine.parent.parent / "refs").mkdir()
    (mine.parent.parent / "refs" / "main").write_text("def")
    assert clip_obtainable(ref)


def test_a_state_refuses_a_model_folder_that_was_re_exported(tmp_path: Path, bundled_export: Path) -> None:
    state = tmp_path / "state"
    task = write_task(tmp_path / "t", {"bag": 8, "coat": 4}, n=3)
    _learn(task, state, "--budget", "64KB", *BUNDLED)
    snapshot = read_state(state) or pytest.fail()
    meta = json.loads((snapshot.folder / "snapshot.json").read_text())
    name = next(n for n in meta["model_files"] if n.endswith(".onnx"))
    meta["model_files"][name] = "0" * 64  # as if the state had learned with an export since replaced
    (snapshot.folder / "snapshot.json").write_text(json.dumps(meta))
    for command in (["classify", str(task / "bag" / "0.png")], ["learn", "--task-dir", str(task)]):
        code, _, err = invoke(*command, "--state-dir", str(state))
        assert code == 2 and "re-exported" in err and name in err and len(err.strip().splitlines()) == 1, err


def test_a_swap_that_died_between_its_two_renames_is_undone(tmp_path: Path) -> None:
    from edgecl.model_dir import read_manifest

    model = tmp_path / "bundled"
    model.mkdir()
    (model / "manifest.json").write_text("{}")
    model.rename(tmp_path / ".bundled.old-4242")  # the first rename happened, the second never did
    with pytest.raises(Exception, match="manifest.json"):  # restored, then read (this one is not a real manifest)
        read_manifest(model)
    assert (model / "manifest.json").is_file() and not (tmp_path / ".bundled.old-4242").exists()


def test_under_a_ram_cap_rows_not_replayed_keep_their_estimators() -> None:
    """A RAM cap replays only some memory rows; GCL's per-sample estimators of the others stay for later tasks."""
    from edgecl.learn.trainer import TrainSchedule
    from edgecl.ram import TrainSizes

    x, y, text = clustered(4, 30, 2)
    texts = {f"c{c}": text[c] for c in range(4)}
    learner = Learner(LearnerConfig(method="gcl", memory=MemoryConfig(64_000, "fp16"),
                                    train=TrainSchedule(min_steps=20, max_steps=20)), DIM)  # fmt: skip
    first = np.isin(y, [0, 1])
    learner.learn_embeddings(x[first], [f"c{c}" for c in y[first]], text=texts)
    stored = set(learner.memory.ids.tolist())
    assert stored <= set(learner.state.resume.loss.u2)
    learner.learn_embeddings(x[~first], [f"c{c}" for c in y[~first]], text=texts, sizes=TrainSizes(16, 10))
    still = stored & set(learner.memory.ids.tolist())
    assert len(still) > 10 and still <= set(learner.state.resume.loss.u2)  # more than the 10 replayed


def test_saving_into_the_folder_it_was_loaded_from_and_mixed_files_are_refused(tmp_path: Path) -> None:
    """The README's Python API: load_from(folder), learn, save_to(folder) again; files mixed from two saves are a
    one-line error, not scores under the wrong class names."""
    from edgecl.errors import EdgeclError
    from edgecl.learn.trainer import TrainSchedule

    x, y, text = clustered(3, 20, 3)
    texts = {f"c{c}": text[c] for c in range(3)}
    config = LearnerConfig(method="er_cb", memory=MemoryConfig(64_000), train=TrainSchedule(min_steps=10))
    learner = Learner(config, DIM)
    part = np.isin(y, [0, 1])
    learner.learn_embeddings(x[part], [f"c{c}" for c in y[part]], text=texts)
    folder = tmp_path / "saved"
    learner.save_to(folder)
    (tmp_path / "two-classes.json").write_bytes((folder / "learner.json").read_bytes())
    learner = Learner.load_from(folder)
    learner.learn_embeddings(x[~part], [f"c{c}" for c in y[~part]], text=texts)  # trains from the saved adapter
    learner.save_to(folder)
    again = Learner.load_from(folder)
    assert again.classes == ["c0", "c1", "c2"] and (again.predict(x) == y).mean() > 0.9
    again.forget_class("c1")  # loaded, not retrained: its adapter folder is carried over from the folder itself
    again.save_to(folder)
    assert Learner.load_from(folder).classes == ["c0", "c2"] and (folder / "adapter").is_dir()
    (folder / "learner.json").write_bytes((tmp_path / "two-classes.json").read_bytes())  # from the earlier save
    with pytest.raises(EdgeclError, match="do not belong together"):
        Learner.load_from(folder)


def test_verbose_on_a_pipe_says_each_stage_as_a_line(tmp_path: Path, bundled_export: Path) -> None:
    """No bar where stderr is not a terminal (a log file, a service's journal), but with -v one line per stage."""
    from tests.test_cli_learn import edgecl

    task = write_task(tmp_path / "t", {"bag": 8, "coat": 4}, n=4)
    out = edgecl("-v", "learn", "--task-dir", str(task), "--budget", "64KB", "--backbone", "bundled",
                 "--state-dir", str(tmp_path / "s"))  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("INFO ")]
    assert any(line.startswith("INFO encoding images (8)") for line in lines), out.stderr
    assert any(line.startswith("INFO training: ") and " done [" in line for line in lines), out.stderr
