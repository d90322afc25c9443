"""medtrinity-25m: raw medical image collections to multigranular datasets.

Data flows one way (see ARCHITECTURE.md)::

    sources -> records -> triplets -> shards -> card/hub -> consumers

- ``builder.pipeline``  the build: sources, readers, ROIs, text, knowledge, engines, the build itself, the card;
- ``builder.formats``   output formats (Parquet, WebDataset): one object each, in one registry;
- ``builder.dataset``   the read side: verify, hub, audit, export, catalog and browser, validation;
- ``builder.layout``    what a dataset folder holds: the only thing both sides share with the row schema;
- ``builder.cli``       the ``medtri-build`` command line.

The row itself is defined once, in ``medtrinity_25m.py`` (the consumer side), which
imports nothing from this package.
"""

__version__ = "0.1.0"
