"""An export tries first the quantisation recipe this CPU kind is known to need, and remembers what it chose."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgecl.export import ExportOptions, export_model, recipe_memory
from edgecl.export.quantize import ISA_FIRST, RECIPES, recipe_order
from edgecl.model_dir import cpu_int8_isa, read_manifest


def _tried(model: Path, tower: str) -> list[str]:
    return [t["recipe"]["name"] for t in read_manifest(model).data["towers"][tower]["quantization"]["tried"]]


def test_the_known_recipe_comes_first_and_the_rest_keep_their_order() -> None:
    for kind, recipes in RECIPES.items():
        for isa in ("avx2", "amx", "arm-dotprod", "unknown"):
            order = recipe_order(kind, isa)
            known = ISA_FIRST.get(kind, {}).get(isa, ISA_FIRST.get(kind, {}).get("*"))
            assert sorted(r.name for r in order) == sorted(r.name for r in recipes)
            assert order[0].name == (known or recipes[0].name)
            assert [r for r in order if r.name != known] == [r for r in recipes if r.name != known]
        learned = recipes[-1].name
        assert recipe_order(kind, "avx2", learned)[0].name == learned  # what this machine chose before wins
        assert recipe_order(kind, "avx2", "no-such-recipe") == recipe_order(kind, "avx2")


def test_an_export_remembers_its_recipes_and_the_next_one_tries_them_first(
    tiny_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGECL_HOME", str(tmp_path / "home"))
    backbone = f"openclip:{tiny_config}"
    first = export_model(backbone, tmp_path / "a", ExportOptions())
    chosen = {t: first.data["towers"][t]["quantization"]["chosen"] for t in ("image", "text")}
    assert recipe_memory.learned(first.backbone) == chosen  # the tiny towers meet their targets
    assert _tried(tmp_path / "a", "image")[0] == recipe_order("transformer", cpu_int8_isa())[0].name
    # what an earlier export on this CPU kind chose is tried first, before the built-in order
    memory = next((tmp_path / "home" / "cache" / "recipes").iterdir())
    memory.write_text(json.dumps({"image": "dynamic-rr", "text": "dynamic"}))
    second = export_model(backbone, tmp_path / "b", ExportOptions())
    assert _tried(tmp_path / "b", "image")[0] == "dynamic-rr" and _tried(tmp_path / "b", "text")[0] == "dynamic"
    quant = second.data["towers"]["image"]["quantization"]
    first_try = quant["tried"][0]
    met = first_try["cosine_mean"] >= quant["cosine_target"] and first_try["agreement"] >= quant["agreement_target"]
    assert (quant["chosen"] == "dynamic-rr" and len(quant["tried"]) == 1) == met  # stops at the first that meets
    memory.write_text("{damaged")  # a damaged memory is the built-in order (the first export's), not an error
    assert recipe_memory.learned(first.backbone) == {}
