"""medtrinity-25m's pipeline: raw medical image collections to multigranular datasets.

Architecture. Data flows one way::

    sources -> records -> triplets -> shards -> card/hub -> consumers

- ``sources``   the manifest (``sources/manifest.py``), side tables, work units and
                one adapter per input format (a registry, ``ADAPTERS``);
- ``readers``   DICOM, NIfTI, raster: ``read(path) -> (array, meta)`` (``READERS``);
- ``roi``       label maps and boxes to ROIs (box, area ratio, position);
- ``text``      caption templates, coarse captions, measurements, describers;
- ``triplets``  one work unit to finished rows (what a worker process runs);
- ``writers``   rows to Parquet / WebDataset shards behind one interface;
- ``accounting`` rejects log and counts; ``card`` the dataset card;
- ``engine``    the build: units through a process pool, rows to the writers;
- ``cli``       the ``medtri-build`` click group.

The row itself is defined once, in ``medtrinity_25m.py`` (the consumer side), which
imports nothing from this package.
"""

__version__ = "0.1.0"
