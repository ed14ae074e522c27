"""Super-network mode: train one elastic network once, then measure any sub-network in seconds.

Modules (imported on demand; this package file imports nothing heavy):

- :mod:`~nas_core.supernet.space`: the space (``SupernetSpaceConfig``), a sub-network
  (``SubnetConfig``), ``to_arch_spec`` / ``spec_to_config``, ``validate_subnet_spec``,
  ``choices_for_supernet`` and ``SupernetSpace`` (the LINAS search-space plug-in).
- :mod:`~nas_core.supernet.network`: ``SuperNet`` (elastic depth, kernel, expand ratio,
  width), ``extract_subnet`` (a standalone ``build_model`` network with the sliced
  weights), ``recalibrate_bn``, ``sort_channels``.
- :mod:`~nas_core.supernet.train`: ``train_supernet`` (sandwich rule, in-place
  distillation, early stopping, resumable atomic checkpoints).
- :mod:`~nas_core.supernet.checkpoint`: the checkpoint format and its refusals.
- :mod:`~nas_core.supernet.measure`: ``measure_subnet`` -> a ``Metrics`` estimate.
- :mod:`~nas_core.supernet.finetune`: ``finetune`` a chosen sub-network into a normal candidate.
- :mod:`~nas_core.supernet.jobs`: worker handlers (``train``, ``measure``, ``finetune``) and
  ``make_payload`` for the session.
- :mod:`~nas_core.supernet.registry`: the store's ``supernets`` table.
- :mod:`~nas_core.supernet.cli`: ``python -m nas_core supernet train|measure|status``.
"""
