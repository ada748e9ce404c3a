"""slp: multimodal sign-language pose pre-training (SL-1.5M).

The library knows nothing of command lines: entry points live in ``data_curation``,
``pretrain`` and ``finetune``.
"""

__version__ = "0.1.0"
#: The name to ``pip install`` (pyproject.toml's ``[project] name``): ``slp`` on PyPI is another project. Install
#: hints and model cards (``library_name``) name it; the import package is ``slp``.
DISTRIBUTION = "slp-signs"
