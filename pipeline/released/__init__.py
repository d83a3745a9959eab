"""Stage ``released``: the reference's released files (LutingWang/OADP, mmdet 2) converted into this project's.

Subcommands (each registered on :data:`STAGE` by its own module with ``@STAGE.command``, imported below)::

    detector  a released detector checkpoint (``work_dirs/oadp_ov_coco/iter_32000.pth``,
              ``work_dirs/oadp_ov_lvis/epoch_24.pth``) -> ``final.pth`` of an experiment, as ``pipeline.train fit``
              writes it (:mod:`pipeline.released.detector`)
    features  the released OAKE files of one kind and split -> one verified feature-cache shard
              (:mod:`pipeline.released.features`)
    prompt    a prompt file of the reference's layout (``ml_coco.pth``, ``vild.pth``) -> this pipeline's
              (:mod:`pipeline.released.prompt`)

Every file is read without running any of its code (:mod:`pipeline.core.safe_pickle`): a file whose pickle names
anything else than what its format holds is refused, naming the file.
"""

from __future__ import annotations

from pipeline.core.options import Stage

STAGE = Stage("python -m pipeline.released", __doc__)

from pipeline.released import detector, features, prompt  # noqa: E402, F401  (they register their commands)

run, build_parser, main = STAGE.run, STAGE.build_parser, STAGE.main
