"""SL-1.5M curation: dataset adapters, the sharding pipeline and the ``slp-curate`` command."""
