"""Post-hoc analysis of a finished domain-adaptation run: ``mtlda analyze RUN_DIR``.

Rebuilds the run from its ``record.json``, loads a checkpoint, extracts the
shared features of the source and target *test* splits and writes to the
output folder (default ``RUN_DIR/analysis``):

* ``analysis.json``: proxy A-distance between the domains' features, per-class
  accuracy and confusion matrices on both test splits;
* ``tsne.png``: a t-SNE map of source and target features;
* ``confusion.png``: the target confusion matrix;

and logs both figures to the run's TensorBoard folder (``RUN_DIR/tb``).
Target labels are read here only to *report*; nothing flows back into
training or selection.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from .config import ConfigError, merge_config
from .experiment import RECORD_NAME, build_trainer
from .records import atomic_save_png, atomic_write_json

log = logging.getLogger(__name__)

__all__ = [
    "proxy_a_distance",
    "tsne_plot",
    "confusion_plot",
    "per_class_accuracy",
    "confusion_matrix",
    "analyze_run",
]


def _matrix(features) -> np.ndarray:
    if isinstance(features, torch.Tensor):
        features = features.detach().double().cpu().numpy()
    features = np.asarray(features, dtype=np.float64)
    return features.reshape(features.shape[0], -1)


def proxy_a_distance(source_features, target_features, seed: int = 0, C: float = 1.0) -> float:
    """Proxy A-distance ``d_A = 2 (1 - 2 eps)`` between two feature samples.

    ``eps`` is the test error of a linear SVM (scikit-learn ``LinearSVC``, on
    standardised features) trained to tell source from target on a random,
    stratified half of the pooled samples and tested on the other half.
    Ben-David, Blitzer, Crammer, Pereira, "Analysis of Representations for
    Domain Adaptation", NeurIPS 2007; Ben-David et al., "A theory of learning
    from different domains", Machine Learning 79, 2010.  About 2 for
    separable domains, about 0 for indistinguishable ones (slightly negative
    values are sampling noise and are returned as they are).
    """
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    source, target = _matrix(source_features), _matrix(target_features)
    if source.shape[1] != target.shape[1]:
        raise ValueError(f"source features have {source.shape[1]} dimensions, target {target.shape[1]}")
    if len(source) < 2 or len(target) < 2:
        raise ValueError("proxy A-distance needs at least two samples per domain")
    features = np.concatenate([source, target])
    domains = np.concatenate([np.zeros(len(source), dtype=int), np.ones(len(target), dtype=int)])
    x_fit, x_test, d_fit, d_test = train_test_split(features, domains, test_size=0.5, random_state=seed, stratify=domains)
    classifier = make_pipeline(StandardScaler(), LinearSVC(C=C, random_state=seed, max_iter=5000))
    classifier.fit(x_fit, d_fit)
    error = float(np.mean(classifier.predict(x_test) != d_test))
    return 2.0 * (1.0 - 2.0 * error)


def tsne_plot(source_features, target_features, path, seed: int = 0, title: str = "t-SNE of features"):
    """2-D t-SNE (scikit-learn, PCA init) of both domains' features, saved as a PNG; returns the figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    source, target = _matrix(source_features), _matrix(target_features)
    features = np.concatenate([source, target])
    if len(features) < 5:
        raise ValueError("t-SNE needs at least 5 samples")
    perplexity = float(min(30.0, (len(features) - 1) / 3.0))
    embedded = TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed).fit_transform(features)
    figure, axis = plt.subplots(figsize=(6, 6))
    axis.scatter(*embedded[: len(source)].T, s=4, alpha=0.6, c="tab:blue", label=f"source ({len(source)})")
    axis.scatter(*embedded[len(source) :].T, s=4, alpha=0.6, c="tab:red", label=f"target ({len(target)})")
    axis.set_title(title)
    axis.set_xticks([])
    axis.set_yticks([])
    axis.legend(loc="best", markerscale=3)
    figure.tight_layout()
    atomic_save_png(figure, path)
    return figure


def confusion_plot(matrix, path, title: str = "target confusion matrix"):
    """Row-normalised confusion matrix as a heat map (counts written in the cells), saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix)
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    size = max(4.0, 0.5 * len(matrix) + 2.0)
    figure, axis = plt.subplots(figsize=(size, size))
    image = axis.imshow(normalised, vmin=0.0, vmax=1.0, cmap="Blues")
    if len(matrix) <= 20:
        for i in range(len(matrix)):
            for j in range(len(matrix)):
                axis.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=7,
                          color="white" if normalised[i, j] > 0.5 else "black")
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    axis.set_title(title)
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    figure.tight_layout()
    atomic_save_png(figure, path)
    return figure


def confusion_matrix(labels, predictions, num_classes: int) -> np.ndarray:
    """``M[i, j]`` = number of samples of true class ``i`` predicted as ``j`` (scikit-learn), (C, C) ints."""
    from sklearn.metrics import confusion_matrix as sk_confusion_matrix

    return sk_confusion_matrix(_labels(labels), _labels(predictions), labels=list(range(num_classes)))


def per_class_accuracy(labels, predictions, num_classes: int) -> list[float | None]:
    """Accuracy (recall) of each true class; ``None`` for a class with no samples."""
    matrix = confusion_matrix(labels, predictions, num_classes)
    totals = matrix.sum(axis=1)
    return [float(matrix[c, c] / totals[c]) if totals[c] else None for c in range(num_classes)]


def _labels(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values).reshape(-1).astype(np.int64)


def _subsample(n: int, max_samples: int, seed: int) -> np.ndarray:
    if n <= max_samples:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_samples, replace=False))


def analyze_run(run_dir, output_dir=None, max_samples: int = 2000, checkpoint: str | None = None,
                device: str | None = None, seed: int = 0) -> dict:
    """Analyse a finished domain-adaptation run; returns what it writes to ``analysis.json``.

    ``checkpoint``: ``"best"`` or ``"last"`` (default: the one the record reports, ``train.select``;
    ``last`` when ``best.pt`` is missing).  ``max_samples`` caps the number of features per domain
    used for the A-distance and t-SNE (a fixed, seeded subset); per-class accuracy and the
    confusion matrices use the whole test splits.
    """
    from omegaconf import OmegaConf
    from torch.utils.tensorboard import SummaryWriter

    run_dir = Path(run_dir)
    record_path = run_dir / RECORD_NAME
    if not record_path.is_file():
        raise FileNotFoundError(f"{record_path} not found: analyze needs a finished run (its record.json)")
    record = json.loads(record_path.read_text())
    layers = [OmegaConf.create(record["config"])]
    if device:
        layers.append(OmegaConf.create({"train": {"device": device}}))
    cfg = merge_config(*layers, source=str(record_path))
    if cfg.problem != "domain_adaptation":
        raise ConfigError(f"{run_dir}: analyze needs a domain_adaptation run, this one is '{cfg.problem}'")
    if max_samples < 5:
        raise ConfigError(f"--max-samples must be at least 5, got {max_samples}")
    checkpoint = checkpoint or cfg.train.select
    if checkpoint not in ("best", "last"):
        raise ConfigError(f"checkpoint must be 'best' or 'last', got {checkpoint!r}")
    if not (run_dir / "checkpoints" / f"{checkpoint}.pt").is_file():
        fallback = "last" if checkpoint == "best" else None
        if fallback and (run_dir / "checkpoints" / f"{fallback}.pt").is_file():
            log.warning("%s: no %s.pt, analysing %s.pt", run_dir, checkpoint, fallback)
            checkpoint = fallback
        else:
            raise FileNotFoundError(f"{run_dir / 'checkpoints' / (checkpoint + '.pt')} not found")
    output_dir = Path(output_dir) if output_dir is not None else run_dir / "analysis"

    trainer = build_trainer(cfg, run_dir)
    trainer.load_weights(checkpoint)
    problem = trainer.problem
    if len(problem.tasks) != 1:
        raise ConfigError(
            f"{run_dir}: analyze reads the predictions of one task, but this run has tasks {', '.join(problem.tasks)} "
            "(multi-task domain adaptation); its per-task target accuracies are in record.json"
        )
    (task_name,) = problem.tasks
    num_classes = int(problem.tasks[task_name].output_size)

    source_logits, source_features, source_labels = problem.forward_split(problem.source_test, labelled=True)
    with problem.target_statistics():  # AdaBN: the target as deployed
        target_logits, target_features, target_labels = problem.forward_split(problem.target_test, labelled=True)
    source_pred, target_pred = source_logits.argmax(1), target_logits.argmax(1)

    s_index = _subsample(len(source_features), max_samples, seed)
    t_index = _subsample(len(target_features), max_samples, seed + 1)
    source_sample = source_features.cpu().numpy()[s_index]
    target_sample = target_features.cpu().numpy()[t_index]

    confusion = {
        "source": confusion_matrix(source_labels, source_pred, num_classes),
        "target": confusion_matrix(target_labels, target_pred, num_classes),
    }
    result = {
        "run_dir": str(run_dir),
        "name": record.get("name"),
        "seed": record.get("seed"),
        "checkpoint": checkpoint,
        "task": task_name,
        "num_classes": num_classes,
        "samples": {"source_test": len(source_labels), "target_test": len(target_labels),
                    "a_distance_and_tsne_per_domain": [len(s_index), len(t_index)]},
        "proxy_a_distance": proxy_a_distance(source_sample, target_sample, seed=seed),
        "accuracy": {
            "source": float((source_pred == source_labels).float().mean()),
            "target": float((target_pred == target_labels).float().mean()),
        },
        "per_class_accuracy": {
            "source": per_class_accuracy(source_labels, source_pred, num_classes),
            "target": per_class_accuracy(target_labels, target_pred, num_classes),
        },
        "confusion_matrix": {domain: matrix.tolist() for domain, matrix in confusion.items()},
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    tsne = tsne_plot(source_sample, target_sample, output_dir / "tsne.png", seed=seed,
                     title=f"{cfg.data.source} → {cfg.data.target} ({checkpoint}.pt)")
    confusion_figure = confusion_plot(confusion["target"], output_dir / "confusion.png",
                                      title=f"{cfg.data.target} test confusion ({checkpoint}.pt)")
    atomic_write_json(output_dir / "analysis.json", result)
    writer = SummaryWriter(log_dir=str(run_dir / "tb"))
    try:
        step = int(record.get("steps") or 0)
        writer.add_figure("analysis/tsne", tsne, global_step=step)  # closes the figures
        writer.add_figure("analysis/confusion_target", confusion_figure, global_step=step)
        writer.add_scalar("analysis/proxy_a_distance", result["proxy_a_distance"], step)
    finally:
        writer.close()
    return result
