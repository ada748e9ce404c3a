"""slp: multimodal sign-language pose pre-training (SL-1.5M).

The library knows nothing of command lines: entry points live in ``data_curation``,
``pretrain`` and ``finetune``.
"""

__version__ = "0.1.0"
