"""The end-to-end LoRA study (``hrp-sim lora``): every init fine-tunes the real model on a real
task, seeds paired. Importing this package imports none of its modules.

=================  ==========================================================================
``config``         ``LoraConfig`` (core-only: the CLI validates with it)
``data``           the task, base model and kernels; each seed's key, data order and head
``adapters``       LoRA adapters on the Flax BERT: the adapted model's hidden states and logits
``inits``          the inits on the task objective (the core's formulas) and their inputs
``programs``       the jitted train step, evaluation, λ_max and gradients; the training loop
``bridge``         captured energy at init of a target direction (the theory's measure)
``runs``           saved runs: their keys, names and the resume rule
``study``          the study driver: its steps, each a call into the module that owns it
``summary``        statistics: the ``summary.json`` contract
``report``         the table and the files; ``figures`` its figures
``peft``           trained adapters as PEFT LoRA adapters for transformers + peft
=================  ==========================================================================
"""
