"""`ablate train` in-process: runs, prints the table, writes its files; bad input exits 2."""

import json

from ablations.cli import main


def test_ablate_train_smoke_writes_checkpoint_pictures_metrics_and_config(tmp_path_factory, capsys):
    # the work directory test_train.py also uses for its data cache: generated once per session
    workdir = tmp_path_factory.getbasetemp() / "ablate-train"
    code = main(["train", "--profile", "smoke", "--workdir", str(workdir), "--run-name", "cli-demo",
                 "--set", "model.mim.mask_ratio=0.5", "--set", "pretrain.eval_every=5", "--tasks", "synth_vqa,synth_cls"])
    out = capsys.readouterr().out
    assert code == 0
    run = workdir / "train" / "cli-demo"
    assert "mask_ratio: 0.5" in (run / "config.yaml").read_text()
    assert (run / "pretrain" / "checkpoint.pt").is_file()
    assert sorted(p.name for p in (run / "pretrain" / "reconstructions").iterdir()) == ["step_10.png", "step_5.png"]
    summary = json.loads((run / "metrics.json").read_text())
    assert set(summary["tasks"]) == {"synth_vqa", "synth_cls"}
    assert set(summary["tasks"]["synth_vqa"]["test"]) == {"overall_acc", "open_acc", "closed_acc"}
    assert summary["pretrain"]["flops"] > 0 and (workdir / "cache").is_dir()
    # the results table: one row per task metric, with the test value
    acc = summary["tasks"]["synth_cls"]["test"]["acc"]
    assert any(line.split()[:3] == ["synth_cls", "acc", f"{acc:.2f}"] for line in out.splitlines())


def test_ablate_train_unknown_task_is_a_usage_error(tmp_path, capsys):
    code = main(["train", "--profile", "smoke", "--workdir", str(tmp_path), "--tasks", "synth_vqq"])
    assert code == 2
    assert "synth_vqa" in capsys.readouterr().err  # the message suggests the closest task
