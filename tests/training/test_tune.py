"""``tune`` end to end on a tiny BEIR fixture and tiny random models: outputs, loss, students,
determinism, atomic publishing and every bad input."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from rp_test_support import HashEmbedder

from rerank_plugins import CrossEncoderReranker, ModelNotFoundError
from rerank_plugins.cli import main
from rerank_plugins.training import report as reporting
from rerank_plugins.training import runner as tune_runner
from rerank_plugins.training import student_layer_ids, tune
from rerank_plugins.training.train import NEW_HEAD_LOGIT_SCALE

pytest.importorskip("bm25s")
pytest.importorskip("faiss")

FAST = {
    "negatives_per_query": 3,
    "rank_max": 8,
    "batch_size": 4,
    "max_length": 48,
    "eval_depth": 8,
    "eval_fraction": 0.2,
    "device": "cpu",
    "show_progress": False,
}


def _run(data: Path, out: Path, **kwargs):
    return tune(data, out=out, embedder=HashEmbedder(), **{**FAST, **kwargs})


def test_tune_writes_a_loadable_model_and_report_and_the_loss_goes_down(
    tiny_beir: Path, tiny_ce_path: Path, tmp_path: Path, one_thread: None
) -> None:
    out = tmp_path / "model"
    # 60 steps: with a real vocabulary the random model needs them to fit 8 queries
    result = _run(tiny_beir, out, base=tiny_ce_path, epochs=30, lr=3e-3, export_int8=True)
    assert result.path == out.absolute()
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "training_report.json"} <= names
    assert "README.md" in names and "onnx" in names
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".model.")]  # no temp dirs

    report = json.loads((out / "training_report.json").read_text())
    assert report["format_version"] == 1
    assert report["settings"]["loss"] == "mnrl"
    assert report["settings"]["logit_scale"] == 1.0  # a cross-encoder's head keeps its scale
    assert report["negatives"]["pseudo_queries"] == 0  # titles are opt-in (default 0)
    # "auto" precision: the suite pins CPUs to float32 (RERANK_PLUGINS_CPU_AUTO_DTYPE)
    assert report["settings"]["precision"] == report["training"]["precision"] == "fp32"
    assert report["data"]["train_queries"] == 8 and report["data"]["eval_queries"] == 2
    evaluation = report["evaluation"]
    for name in ("first_stage", "before", "after", "int8"):
        assert 0.0 <= evaluation[name]["ndcg@10"] <= 1.0
    assert evaluation["after"]["pairs_per_s"] > 0
    blend = evaluation["after"]["blend"]  # measured on the same candidates, no extra scoring
    assert [row["weight"] for row in blend] == list(reporting.BLEND_WEIGHTS)
    assert all(0.0 <= row["ndcg@10"] <= 1.0 for row in blend)
    assert evaluation["recommended_blend_weight"] == reporting.recommend_blend(evaluation["after"])
    assert evaluation["int8"]["parity"]["fp32_max_abs_diff_vs_torch"] < 1e-3
    trend = report["training"]["loss_trend"]
    assert report["training"]["steps"] == 60  # ceil(8 rows / 4) x 30 epochs
    assert trend["last"] < trend["first"] - 0.2, report["training"]["loss_history"]
    card = (out / "README.md").read_text()
    assert "mnrl" in card and "NDCG@10" in card and str(tiny_ce_path) in card
    assert "## Blending with the first stage" in card
    assert report["warnings"] == reporting.verdict(evaluation)
    assert ("**Warning**" in card) == bool(report["warnings"])

    reranker = CrossEncoderReranker(out, device="cpu")
    assert reranker.max_length == report["settings"]["serve_length"]
    scores = reranker.score("does vitamin d cause", ["vitamin d deficiency", "heart"])
    assert scores.shape == (2,)
    # The int8 export built at the published path is a cache hit, not a rebuild.
    onnx_entries = sorted(p.name for p in (out / "onnx").iterdir())
    int8 = CrossEncoderReranker(out, backend="onnx", quantize="int8", cache_dir=out / "onnx")
    assert sorted(p.name for p in (out / "onnx").iterdir()) == onnx_entries
    assert int8.score("does vitamin d cause", ["vitamin d deficiency"]).shape == (1,)


def test_plain_encoder_base_gets_a_head_and_runs_are_deterministic(
    tiny_beir: Path, tiny_embedder_path: Path, tmp_path: Path, one_thread: None
) -> None:
    kwargs = {"base": tiny_embedder_path, "max_steps": 2, "seed": 7, "pseudo_queries": "auto"}
    first = _run(tiny_beir, tmp_path / "a", **kwargs)
    _run(tiny_beir, tmp_path / "b", **kwargs)
    report = first.report
    assert report["model"]["base_kind"] == "encoder" and report["model"]["new_head"]
    assert report["evaluation"]["before"] is None  # a random head has nothing to measure
    assert report["settings"]["head_lr"] == tune_runner.DEFAULT_HEAD_LR
    # a new head starts near zero: mnrl sharpens its softmax, and the saved head has it folded in
    assert report["settings"]["logit_scale"] == NEW_HEAD_LOGIT_SCALE
    assert report["training"]["logit_scale"] == NEW_HEAD_LOGIT_SCALE
    # ... and "auto" asks as many title pseudo-queries as judged training queries
    assert report["settings"]["pseudo_queries"] == report["data"]["train_queries"]
    assert report["negatives"]["pseudo_queries"] == report["data"]["train_queries"]
    weights_a = (tmp_path / "a" / "model.safetensors").read_bytes()
    weights_b = (tmp_path / "b" / "model.safetensors").read_bytes()
    assert weights_a == weights_b
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert len(config["id2label"]) == 1  # one relevance logit
    CrossEncoderReranker(tmp_path / "a", device="cpu").score("q", ["p"])


def test_student_has_n_layers_and_learns_from_the_teacher(
    tiny_beir: Path,
    tiny_ce_path: Path,
    tmp_path: Path,
    one_thread: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    windows: list[int] = []
    real_teacher_scores = tune_runner.teacher_scores

    def spy(mined, score_pairs, text_of, **kwargs):
        windows.append(score_pairs.__self__.max_length)
        assert kwargs == {"listwise": False}  # margin_mse: a row per (query, positive)
        return real_teacher_scores(mined, score_pairs, text_of, **kwargs)

    monkeypatch.setattr(tune_runner, "teacher_scores", spy)
    out = tmp_path / "student"
    result = _run(tiny_beir, out, teacher=tiny_ce_path, student_layers=1, max_steps=3)
    report = result.report
    # the labels come from the window the student trains on, not the wider serving one
    assert windows == [FAST["max_length"]] and report["settings"]["serve_length"] > windows[0]
    assert "rerank:" not in capsys.readouterr().err  # show_progress=False reaches every scorer
    assert report["settings"]["loss"] == "margin_mse"
    assert report["settings"]["base"] == str(tiny_ce_path)  # defaults to the teacher
    assert report["model"]["layers"] == 1
    assert report["model"]["layer_ids_from_base"] == student_layer_ids(2, 1) == [1]
    assert json.loads((out / "config.json").read_text())["num_hidden_layers"] == 1
    assert set(report["evaluation"]) >= {"teacher", "before", "after", "throughput_side_by_side"}
    student = CrossEncoderReranker(out, device="cpu")
    assert len(student.backend.model.bert.encoder.layer) == 1
    assert student.score("q", ["p", "d"]).shape == (2,)


def test_listwise_distillation_learns_the_teachers_scores_over_each_whole_list(
    tiny_beir: Path, tiny_ce_path: Path, tmp_path: Path, one_thread: None, monkeypatch
) -> None:
    rows: list[tuple[int, int]] = []
    real_teacher_scores = tune_runner.teacher_scores

    def spy(mined, score_pairs, text_of, **kwargs):
        labels = real_teacher_scores(mined, score_pairs, text_of, **kwargs)
        assert kwargs == {"listwise": True}
        for item, row in zip(mined, labels, strict=True):  # one row per query, whole list
            assert len(row) == len(item.positives) + len(item.negatives)
        rows.append((len(mined), len(labels)))
        return labels

    monkeypatch.setattr(tune_runner, "teacher_scores", spy)
    out = tmp_path / "student"
    result = _run(
        tiny_beir, out, teacher=tiny_ce_path, student_layers=1, loss="listnet_kd", max_steps=3
    )
    report = result.report
    assert rows == [(report["data"]["train_queries"], report["data"]["train_queries"])]
    assert report["settings"]["loss"] == "listnet_kd" and report["training"]["steps"] == 3
    assert "- Loss: `listnet_kd`" in (out / "README.md").read_text()
    assert CrossEncoderReranker(out, device="cpu").score("q", ["p"]).shape == (1,)


def test_pseudo_queries_add_teacher_labelled_titles_but_no_eval_document(
    tiny_beir: Path, tiny_ce_path: Path, tmp_path: Path, one_thread: None, monkeypatch
) -> None:
    labelled: list[list] = []
    real_teacher_scores = tune_runner.teacher_scores

    def spy(mined, score_pairs, text_of, **kwargs):
        labelled.append(list(mined))
        return real_teacher_scores(mined, score_pairs, text_of, **kwargs)

    monkeypatch.setattr(tune_runner, "teacher_scores", spy)
    result = _run(
        tiny_beir,
        tmp_path / "s",
        teacher=tiny_ce_path,
        student_layers=1,
        max_steps=2,
        pseudo_queries=5,
    )
    report = result.report
    (mined,) = labelled
    pseudo = [m for m in mined if m.query_id.startswith("pseudo:")]
    real = [m for m in mined if not m.query_id.startswith("pseudo:")]
    assert len(pseudo) == 5 == report["negatives"]["pseudo_queries"]
    assert report["settings"]["pseudo_queries"] == 5
    assert len(real) == report["data"]["train_queries"]  # every training query is still there
    held_out = [q for q in (f"q{i}" for i in range(10)) if q not in {m.query_id for m in real}]
    eval_docs = {f"d{q[1:]}" for q in held_out}
    for item in pseudo:
        (doc,) = item.positives
        assert item.query_id == f"pseudo:{doc}" and doc not in eval_docs
        assert doc not in item.negatives and len(item.negatives) == FAST["negatives_per_query"]
    assert report["training"]["rows"] > report["data"]["train_positives"]
    card = (tmp_path / "s" / "README.md").read_text()
    assert "plus 5 corpus titles asked as pseudo-queries" in card


def test_pseudo_queries_without_a_teacher_are_weak_positives(
    tiny_beir: Path, tiny_embedder_path: Path, tmp_path: Path, one_thread: None, monkeypatch
) -> None:
    trained: list[dict] = []
    real_train = tune_runner.run_training

    def spy(model_dir, columns, **kwargs):
        trained.append(columns)
        return real_train(model_dir, columns, **kwargs)

    monkeypatch.setattr(tune_runner, "run_training", spy)
    result = _run(tiny_beir, tmp_path / "w", base=tiny_embedder_path, max_steps=2, pseudo_queries=4)
    report = result.report
    (columns,) = trained
    assert report["negatives"]["pseudo_queries"] == 4
    # every judged positive is a row, and each pseudo-query adds one more (its own document)
    assert len(columns["query"]) == report["data"]["train_positives"] + 4
    negatives = [c for c in columns if c.startswith("negative_")]
    for row in range(len(columns["query"])):
        assert columns["positive"][row] not in {columns[c][row] for c in negatives}
    card = (tmp_path / "w" / "README.md").read_text()
    assert "plus 4 corpus titles asked as pseudo-queries, each with its own document" in card


def test_interrupted_run_leaves_nothing_at_out(
    tiny_beir: Path, tiny_ce_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "model"
    out.mkdir()
    (out / "keep.txt").write_text("the old model")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tune_runner, "run_training", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _run(tiny_beir, out, base=tiny_ce_path, overwrite=True)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]  # the old directory is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["beir", "model"]  # no temp dirs left
    with pytest.raises(KeyboardInterrupt):
        _run(tiny_beir, tmp_path / "fresh", base=tiny_ce_path)
    assert not (tmp_path / "fresh").exists()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"base": "./no/such/model"}, ModelNotFoundError, "does not exist"),
        ({}, ValueError, r"pass base= \(the model to start from\)"),
        ({"base": "B", "loss": "mse"}, ValueError, "distils a teacher's scores"),
        ({"base": "B", "loss": "nope"}, ValueError, "loss must be one of"),
        ({"base": "B", "negatives": "sparse"}, ValueError, "negatives must be one of"),
        ({"base": "B", "rank_min": 9, "rank_max": 8}, ValueError, "rank_max=8 is below rank_min=9"),
        ({"base": "B", "batch_size": 0}, ValueError, "batch_size must be a positive int"),
        ({"base": "B", "student_layers": 2}, ValueError, "must be below the base's 2 layers"),
        ({"base": "B", "relative_margin": 0.1}, ValueError, "pass teacher="),
        ({"base": "B", "pseudo_queries": -1}, ValueError, "pseudo_queries must be >= 0"),
        ({"base": "B", "pseudo_queries": "many"}, TypeError, "pseudo_queries must be an int"),
        ({"base": "B", "lr": float("nan")}, ValueError, "lr must be finite"),
        ({"base": "B", "epochs": 0}, ValueError, "epochs must be > 0"),
        ({"base": "B", "head_lr": "fast"}, TypeError, "head_lr must be a number"),
        ({"base": "B", "loss": "listnet_kd"}, ValueError, "distils a teacher's scores"),
        ({"base": "B", "loss": "bce", "logit_scale": 10.0}, ValueError, "does not use one"),
        ({"base": "B", "logit_scale": 0}, ValueError, "logit_scale must be > 0"),
        ({"base": "B", "precision": "half"}, ValueError, "precision must be one of"),
        ({"base": "B", "precision": "fp16"}, ValueError, "precision='fp16' needs a CUDA device"),
    ],
)
def test_bad_settings_fail_fast(
    tiny_beir: Path,
    tiny_ce_path: Path,
    tmp_path: Path,
    kwargs: dict,
    error: type,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if kwargs.get("base") == "B":
        kwargs = {**kwargs, "base": tiny_ce_path}

    def too_late(*args, **kwargs):
        raise AssertionError("the corpus was indexed before the settings were checked")

    monkeypatch.setattr(tune_runner, "build_retriever", too_late)
    with pytest.raises(error, match=message):
        _run(tiny_beir, tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_non_empty_out_needs_overwrite(tiny_beir: Path, tiny_ce_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "something").write_text("x")
    with pytest.raises(ValueError, match="exists and is not empty; pass overwrite=True"):
        _run(tiny_beir, out, base=tiny_ce_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="exists and is a file"):
        _run(tiny_beir, tmp_path / "file", base=tiny_ce_path)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--split", "dev"], "training split 'dev' has no qrels"),
        (["--base", "./missing-model"], "does not exist"),
        (["--eval-fraction", "2"], "expected a number > 0 and < 1"),
        (["--pseudo-queries", "many"], "expected an integer >= 0 or auto, got 'many'"),
        (["--logit-scale", "0"], "expected a number > 0"),
        (["--precision", "half"], "invalid choice: 'half'"),
        (["--device", "cpu", "--precision", "fp16"], "precision='fp16' needs a CUDA device"),
    ],
)
def test_cli_errors_are_one_line(
    tiny_beir: Path,
    tiny_ce_path: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    argv = ["tune", "--data", str(tiny_beir), "--base", str(tiny_ce_path)]
    argv += ["--out", str(tmp_path / "out"), "--negatives", "bm25", *extra]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse type errors
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert any(message in line for line in err), err
    assert not (tmp_path / "out").exists()


def test_cli_runs_end_to_end_and_the_model_works_everywhere(
    tiny_beir: Path,
    tiny_ce_path: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    one_thread: None,
) -> None:
    out = tmp_path / "cli-model"
    argv = ["tune", "--data", str(tiny_beir), "--base", str(tiny_ce_path), "--out", str(out)]
    argv += ["--negatives", "bm25", "--negatives-per-query", "2", "--rank-max", "6"]
    argv += ["--max-steps", "2", "--batch-size", "2", "--max-length", "40", "--lr", "1e-4"]
    argv += ["--loss", "lambda", "--eval-depth", "6", "--seed", "3", "--quiet", "--device", "cpu"]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["model"] == str(out.absolute())
    settings = json.loads((out / "training_report.json").read_text())["settings"]
    assert settings["loss"] == "lambda" and settings["negatives"] == "bm25"
    assert settings["max_steps"] == 2 and settings["seed"] == 3 and settings["lr"] == 1e-4
    assert settings["serve_length"] == 128  # the tiny model's limit caps the default 256
    # The result works unchanged in `rerank-plugins eval` and both adapters.
    capsys.readouterr()
    eval_argv = ["eval", "--data", str(tiny_beir), "--split", "train", "--retriever", "bm25"]
    eval_argv += ["--reranker", str(out), "--candidates", "6", "--rerank-top", "6", "--quiet"]
    assert main(eval_argv) == 0
    assert "bm25 + rerank@6" in capsys.readouterr().out
    # eval points at the blend weight tune recommended (set here: the tiny run may have none)
    report_path = out / "training_report.json"
    report = json.loads(report_path.read_text())
    report["evaluation"]["recommended_blend_weight"] = 0.3
    report_path.write_text(json.dumps(report))
    assert main(eval_argv) == 0
    assert "its training report recommends --blend 0.3" in capsys.readouterr().err
    assert main([*eval_argv, "--blend", "0.3"]) == 0
    printed = capsys.readouterr()
    assert "recommends" not in printed.err and "rerank@6 blend=0.3" in printed.out
    assert main([*eval_argv, "--blend", "0.8,recommended"]) == 0  # the user's order is kept
    printed = capsys.readouterr()
    assert "--blend recommended: 0.3, from its training report" in printed.err
    assert printed.out.index("blend=0.8") < printed.out.index("blend=0.3")
    report["evaluation"]["recommended_blend_weight"] = None
    report_path.write_text(json.dumps(report))
    assert main([*eval_argv, "--blend", "recommended"]) == 0
    printed = capsys.readouterr()
    assert "recommends no blend" in printed.err and "blend=" not in printed.out
    # The adapters' retrievers pass it through pipeline_kwargs to RerankPipeline.
    from rerank_plugins import CrossEncoderReranker, RerankPipeline

    report["evaluation"]["recommended_blend_weight"] = 0.3
    report_path.write_text(json.dumps(report))
    pipeline = RerankPipeline(
        lambda query, k: [("a", "text a", 1.0)],
        CrossEncoderReranker(str(out), device="cpu"),
        blend_weight="recommended",
    )
    assert pipeline.blend_weight == 0.3
    documents = ["vitamin d deficiency study", "heart disease risk"]
    if importlib.util.find_spec("langchain_core") is not None:
        from langchain_core.documents import Document

        from rerank_plugins.integrations.langchain import CrossEncoderCompressor

        compressor = CrossEncoderCompressor(model=str(out), top_n=1, device="cpu")
        kept = compressor.compress_documents([Document(page_content=d) for d in documents], "q")
        assert len(kept) == 1 and "relevance_score" in kept[0].metadata
    if importlib.util.find_spec("llama_index") is not None:
        from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

        from rerank_plugins.integrations.llama_index import CrossEncoderRerank

        rerank = CrossEncoderRerank(model=str(out), top_n=1, device="cpu")
        nodes = [NodeWithScore(node=TextNode(text=d), score=0.0) for d in documents]
        assert len(rerank.postprocess_nodes(nodes, query_bundle=QueryBundle("q"))) == 1


def test_sigterm_unwinds_like_ctrl_c(
    tiny_beir: Path,
    tiny_ce_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import os
    import signal

    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not interrupt the run")

    before = signal.getsignal(signal.SIGTERM)  # whatever an earlier test (Ray) installed
    monkeypatch.setattr(tune_runner, "run_training", terminated)
    out = tmp_path / "out"
    argv = ["tune", "--data", str(tiny_beir), "--base", str(tiny_ce_path), "--out", str(out)]
    assert main([*argv, "--max-length", "300"]) == 2  # above the tiny model's 128 positions
    assert "max_length=300 is above the base model's limit of 128" in capsys.readouterr().err
    assert main([*argv, "--negatives", "bm25", "--max-length", "48", "--quiet"]) == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == ["beir"]  # no model, no temp dirs
    assert signal.getsignal(signal.SIGTERM) is before
