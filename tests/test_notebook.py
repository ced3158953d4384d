import json
import os

import pytest

NOTEBOOK = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "notebooks", "kaggle_train.ipynb"
)


@pytest.mark.large
def test_kaggle_notebook_runs_end_to_end_on_tiny_data(tmp_path):
    """Executes every cell of the Kaggle notebook with its TINY parameters (a few CPU
    steps on tiny synthetic data), so the notebook cannot rot."""
    papermill = pytest.importorskip("papermill", reason="papermill runs the notebook (tests extra)")
    output = tmp_path / "executed.ipynb"
    papermill.execute_notebook(
        NOTEBOOK,
        str(output),
        kernel_name="python3",
        cwd=str(tmp_path),
        progress_bar=False,
        parameters={
            "INSTALL": False,
            "TINY": True,
            "OUTPUT_DIR": str(tmp_path / "run"),
            "DATA_DIR": str(tmp_path / "tfds"),
        },
    )
    executed = json.loads(output.read_text())
    errors = [
        o
        for cell in executed["cells"]
        for o in cell.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors
    summary = json.loads((tmp_path / "run" / "train" / "train_summary.json").read_text())
    assert summary["steps"] == 6 and summary["files_skipped"] == 0
    evaluation = json.loads((tmp_path / "run" / "evaluation" / "evaluation.json").read_text())
    assert evaluation["groups"]["all"]["examples"] == 2  # max_files=2 whole utterances, one pass
    assert (tmp_path / "run" / "export" / "1" / "saved_model.pb").exists()
    assert (tmp_path / "run" / "example_0.png").read_bytes()[:4] == b"\x89PNG"
    text = "".join(
        "".join(o.get("text", "")) for cell in executed["cells"] for o in cell.get("outputs", [])
    )
    assert "max difference from the Keras model" in text
