"""Open-ended recognition metrics of the ``evaluate`` stage (``--regions``).

``osm``      OSM string matching: normalisation, plural / singular forms, synonym tables, :func:`accuracy`.
``lac``      the LAC relationship levels: relationships files, rule-based noun extraction, :func:`lac_accuracy`.
``regions``  the proxy predictor: ``REGIONS.npz`` (:class:`Regions`), :func:`predict_names`, :func:`region_report`.
``report``   ``open_ended.json``: :func:`open_ended_report` (regions + prompt file + ground truth).

The names below are re-exported so ``from pipeline.evaluate import open_ended`` gives them all.
"""

from pipeline.evaluate.open_ended.lac import (
    LAC_LEVELS,
    LACMatcher,
    NounParse,
    extract_noun,
    lac_accuracy,
    load_relationships,
)
from pipeline.evaluate.open_ended.osm import (
    OpenEndedError,
    accuracy,
    dataset_vocabulary,
    expand,
    load_synonyms,
    normalize,
    plural_singular_forms,
    synonym_table,
)
from pipeline.evaluate.open_ended.regions import (
    REGION_ARRAYS,
    Regions,
    check_regions,
    load_regions,
    predict_names,
    region_report,
)
from pipeline.evaluate.open_ended.report import open_ended_report

__all__ = [
    "LAC_LEVELS",
    "REGION_ARRAYS",
    "LACMatcher",
    "NounParse",
    "OpenEndedError",
    "Regions",
    "accuracy",
    "check_regions",
    "dataset_vocabulary",
    "expand",
    "extract_noun",
    "lac_accuracy",
    "load_regions",
    "load_relationships",
    "load_synonyms",
    "normalize",
    "open_ended_report",
    "plural_singular_forms",
    "predict_names",
    "region_report",
    "synonym_table",
]
