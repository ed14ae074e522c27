"""The app's exports of a candidate: spec, weights, ONNX, TorchScript, standalone source, model cards.

Owns :data:`EXPORT_FORMATS`, :func:`export_candidate` (one file as bytes), :func:`export_bundle`
(a zip of every available export) and :func:`preprocessing_of` (the input preprocessing the exports
state). The pages reach these through :mod:`nas_core.studio`, which re-exports them; torch and the
exporters are imported only when an export is made.
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from nas_core.errors import UserError
from nas_core.records import Candidate
from nas_core.report import CardContext, model_card_html, model_card_markdown
from nas_core.run_setup import weights_path


def _session(store: Any, run_id: int) -> Any:
    """The run's :class:`nas_core.session.Session` (imported on first use, as in :mod:`nas_core.studio`)."""
    from nas_core.session import Session

    return Session(store, run_id)


def preprocessing_of(store: Any, c: Candidate) -> Any:
    """The candidate's input preprocessing and class map (:class:`nas_core.models.export.Preprocessing`).

    The per-channel mean/std are the training split's, recomputed from the candidate's own evaluation
    request (the prepared data is cached, so this is quick); None when that request is not available.
    """
    from nas_core.models.export import Preprocessing

    cfg = _session(store, c.run_id).config
    names = tuple(c.metrics.class_names) if c.metrics is not None and c.metrics.class_names else tuple(
        name for name, _ in (c.metrics.per_class_recall if c.metrics is not None else ()))
    mean = std = None
    jobs = [j for j in store.list_jobs(candidate_id=c.id) if j.kind == "evaluate"]
    if jobs:
        try:
            from nas_core.evaluator import EvalRequest, channel_stats, load_prepared

            m, s = channel_stats(load_prepared(EvalRequest.from_dict(jobs[-1].payload)))
            mean, std = tuple(float(v) for v in m), tuple(float(v) for v in s)
        except (UserError, OSError, KeyError, ValueError, TypeError):
            mean = std = None  # the data moved or the request is old: the card says "not recorded"
    return Preprocessing(image_size=int(cfg.train.image_size), mean=mean, std=std, class_names=names)


def _trained_model(store: Any, c: Candidate) -> Any:
    from nas_core.models import build_model
    from nas_core.models.export import load_state

    sess = _session(store, c.run_id)
    cfg = sess.config
    path = weights_path(store, c.run_id, c.id)
    if not path.exists():
        raise UserError(f"candidate #{c.id} has no trained weights on disk ({path}); only candidates trained "
                        "from scratch by this app have them. Fine-tune a super-network estimate first.")
    model = build_model(c.spec, cfg.input_shape, cfg.n_classes or 8)
    return load_state(model, path).eval(), cfg


EXPORT_FORMATS = ("spec", "weights", "onnx", "torchscript", "source", "card_md", "card_html")


def export_candidate(store: Any, candidate_id: int, fmt: str) -> tuple[str, bytes]:
    """(file name, bytes) of one export of a candidate.

    Formats: spec (JSON), weights (state_dict), onnx, torchscript, source (a
    standalone torch module), card_md, card_html (model cards).

    Raises:
        UserError: unknown format, a baseline (only cards and weights-free formats make sense for
            spec-less models), or no trained weights.
    """
    if fmt not in EXPORT_FORMATS:
        raise UserError(f"unknown export format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}")
    c = store.get_candidate(candidate_id)
    stem = f"run{c.run_id}_candidate{c.id}"
    if fmt in ("card_md", "card_html"):
        sess = _session(store, c.run_id)
        cfg = sess.config
        ctx = CardContext(run_name=sess.run.name,
                          dataset_name=cfg.dataset_ref.describe() if cfg.dataset_ref is not None
                          else Path(cfg.dataset).name or cfg.dataset,
                          dataset_summary=cfg.dataset_summary,
                          training=f"{cfg.train.optimizer}, lr {cfg.train.lr}, batch {cfg.train.batch_size}, "
                                   f"up to {cfg.train.max_epochs} epochs, patience {cfg.train.patience}, "
                                   f"{cfg.train.image_size} px, seed {cfg.train.seed}",
                          env=cfg.env.describe(), preprocessing=tuple(preprocessing_of(store, c).lines()))
        if fmt == "card_md":
            return f"{stem}_model_card.md", model_card_markdown(c, ctx).encode()
        return f"{stem}_model_card.html", model_card_html(c, ctx).encode()
    if c.baseline:
        raise UserError(f"#{c.id} is the hand-made baseline {c.baseline}; export its model card instead")
    if fmt == "spec":
        return f"{stem}_spec.json", c.spec.to_json(indent=2).encode()
    if fmt == "source":
        from nas_core.models.export import generate_source

        cfg = _session(store, c.run_id).config
        return f"{stem}_model.py", generate_source(c.spec, cfg.input_shape, cfg.n_classes or 8,
                                                   preprocessing_of(store, c)).encode()
    model, cfg = _trained_model(store, c)
    if fmt == "weights":
        return f"{stem}_weights.pt", weights_path(store, c.run_id, c.id).read_bytes()
    from nas_core.models import export as ex

    with tempfile.TemporaryDirectory() as tmp:
        if fmt == "onnx":
            out = Path(tmp) / f"{stem}.onnx"
            ex.export_onnx(model, cfg.input_shape, out)
        else:
            out = Path(tmp) / f"{stem}.torchscript.pt"
            ex.export_torchscript(model, cfg.input_shape, out)
        return out.name, out.read_bytes()


def export_bundle(store: Any, candidate_id: int) -> bytes:
    """A zip of every export that is available for the candidate."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        notes = []
        for fmt in EXPORT_FORMATS:
            try:
                name, data = export_candidate(store, candidate_id, fmt)
            except (UserError, ValueError) as exc:
                notes.append(f"{fmt}: not exported: {exc}")
                continue
            zf.writestr(name, data)
        if notes:
            zf.writestr("NOT_EXPORTED.txt", "\n".join(notes) + "\n")
    return buf.getvalue()
