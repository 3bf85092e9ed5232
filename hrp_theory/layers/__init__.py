"""The per-layer study (``hrp-sim real``): the theory's regression problem on every kernel of a
real model, with a real fine-tuning ``ΔW`` and real input covariances. Importing this package
imports none of its modules.

=================  ==========================================================================
``config``         ``RealConfig`` and ``FinetuneConfig`` (core-only: the CLI validates with them)
``full_finetune``  full AdamW fine-tuning on the task → a fine-tuned checkpoint → ΔW per kernel
``kernels``        the selected kernels, their ΔW and Σ, each as a problem in theory units
``study``          every init on every kernel, via the core's preheat-then-SVD
``report``         table, JSON contract, heatmaps
=================  ==========================================================================
"""
