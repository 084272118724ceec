"""Writes eval_cases.json: held-out evaluation prompts for `cargo run --example eval_demo`."""

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import dataset  # noqa: E402

cases = dataset.heldout_captions(30, 2026)
note = ("Held-out evaluation prompts (colour pairs / shape-colour pairs never seen in training); "
        "made by tools/demo_model/make_eval_cases.py")
(HERE / "eval_cases.json").write_text(json.dumps({"note": note, "cases": cases}, indent=1))
