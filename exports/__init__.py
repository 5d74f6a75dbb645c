"""Dataset formats as pure converters between files' content and ``core.records.ImageRecord``.

One module per format: ``coco`` (parse/build), ``via`` (parse), ``yolo`` (write/parse),
``label_studio`` (build_tasks/labeling_config/parse); ``image_files`` reads images (EXIF,
sha256, full decode), ``splits`` derives leak-free splits from content hashes, ``compare``
checks round trips, ``synthetic`` makes records for tests and benchmarks. The database
glue lives in ``services/data_io/imports.py`` and ``services/data_io/exports.py``.
"""
